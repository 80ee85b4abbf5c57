/**
 * starburst-jupyter's JupyterLab extension: the "Burst" left-sidebar panel and its commands.
 *
 * It asks for no particular shell, only the app's own (`app.shell`): in JupyterLab that is the lab
 * shell (a left-sidebar tab), in Notebook 7 the notebook shell, whose left side panel (View -> Left
 * Sidebar -> Show Burst jobs) takes it. Requiring ILabShell kept the plugin from activating there.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, InputDialog, showDialog, Dialog } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';

import { BurstPanel, confirmAndCancel, jobLabel } from './panel';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 1.5l1.9 5.6 5.5-2.3-2.3 5.5 5.4 1.7-5.4 1.9 2.3 5.5-5.5-2.3L12 22.5l-1.9-5.4-5.5 2.3 2.3-5.5L1.5 12l5.4-1.7-2.3-5.5 5.5 2.3z"/>
  </g>
</svg>`;

export const burstIcon = new LabIcon({ name: 'starburst-jupyter:burst', svgstr: ICON_SVG });

namespace CommandIDs {
  export const refresh = 'starburst:refresh';
  export const cancel = 'starburst:cancel-job';
  export const open = 'starburst:open';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'starburst-jupyter:sidebar',
  description: 'The Burst sidebar: burst jobs, their progress, cost, logs and Cancel.',
  autoStart: true,
  requires: [],
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (app: JupyterFrontEnd, palette: ICommandPalette | null, restorer: ILayoutRestorer | null) => {
    const shell = app.shell; // JupyterLab's or Notebook 7's: both have a 'left' area and activateById
    const panel = new BurstPanel(burstIcon);
    shell.add(panel, 'left', { rank: 750 });
    if (restorer) {
      restorer.add(panel, panel.id);
    }

    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Burst: refresh',
      caption: 'Reload the burst jobs in the Burst sidebar',
      execute: () => panel.refresh()
    });
    app.commands.addCommand(CommandIDs.open, {
      label: 'Burst: show jobs',
      caption: 'Open the Burst sidebar',
      execute: () => shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.cancel, {
      label: 'Burst: cancel job',
      caption: 'Cancel a running burst job (asks which one, then for confirmation)',
      execute: async args => {
        await panel.refresh();
        const active = panel.activeJobs;
        let job = active.find(j => j.id === args.id) || (args.id ? null : panel.selectedJob);
        if (!job && !args.id && active.length === 1) {
          job = active[0];
        } else if (!job && !args.id && active.length > 1) {
          const labels = active.map(j => `${jobLabel(j)} (${j.id})`);
          const choice = await InputDialog.getItem({ title: 'Cancel which burst job?', items: labels });
          job = choice.button.accept && choice.value ? active[labels.indexOf(choice.value)] : null;
          if (!job) {
            return false;
          }
        }
        if (!job) {
          await showDialog({
            title: 'No running burst job',
            body: args.id ? `Job ${args.id} is not running.` : 'There is no running burst job to cancel.',
            buttons: [Dialog.okButton()]
          });
          return false;
        }
        const cancelled = await confirmAndCancel(job);
        await panel.refresh();
        return cancelled;
      }
    });
    if (palette) {
      for (const command of [CommandIDs.refresh, CommandIDs.cancel, CommandIDs.open]) {
        palette.addItem({ command, category: 'Burst' });
      }
    }
  }
};

export default plugin;
