/**
 * The "Burst" sidebar: every job of the job store, running first, each row expandable to its
 * waves, workers, the tail of each worker's log and a Cancel button.
 *
 * Live by polling: every second while something changes, backing off (x2, up to 10 s while a job
 * runs, 30 s otherwise) while nothing does; no polling at all while the panel or the page is hidden.
 */
import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { cancelJob, getJob, getLog, IJobDetail, IJobSummary, IWorker, listJobs } from './api';

export const MIN_INTERVAL = 1000;
const MAX_INTERVAL_ACTIVE = 10000;
const MAX_INTERVAL_IDLE = 30000;
const LOG_TAIL_LINES = 8;
const MAX_LOG_WORKERS = 8;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null || !isFinite(seconds)) {
    return '-';
  }
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) {
    return `${s}s`;
  }
  const m = Math.floor(s / 60);
  if (m < 60) {
    return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  }
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

/** "2.5/s, 0m 12s left" (tqdm's words: a rate, and the time left while the job runs). */
export function formatPace(rate: number | null, left: number | null): string {
  if (rate === null || !isFinite(rate) || rate <= 0) {
    return '';
  }
  const speed = rate >= 1 ? `${rate.toFixed(rate < 10 ? 1 : 0)}/s` : `${(rate * 60).toFixed(1)}/min`;
  return left === null ? speed : `${speed}, ${formatDuration(left)} left`;
}

export function formatCost(usd: number): string {
  return usd < 0.01 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

export function jobLabel(job: IJobSummary): string {
  return job.name || job.id;
}

/**
 * Ask, then cancel through the server (the core's cancel path). Returns true if it was cancelled.
 * `onConfirmed` runs once the user said yes, before the request.
 */
export async function confirmAndCancel(job: IJobSummary, onConfirmed?: () => void): Promise<boolean> {
  const running = job.workers.running;
  const result = await showDialog({
    title: 'Cancel burst job?',
    body:
      `Cancel “${jobLabel(job)}” (${job.id})? ` +
      `${running} running worker${running === 1 ? '' : 's'} will be stopped; ` +
      `items already finished (${job.done} of ${job.total}) are kept.`,
    buttons: [Dialog.cancelButton({ label: 'Keep running' }), Dialog.warnButton({ label: 'Cancel job' })]
  });
  if (!result.button.accept) {
    return false;
  }
  if (onConfirmed) {
    onConfirmed();
  }
  try {
    const reply = await cancelJob(job.id);
    return reply.cancelled;
  } catch (error) {
    await showErrorMessage('Could not cancel the burst job', error as Error);
    return false;
  }
}

interface ILogView {
  cursor: number | null;
  lines: string[];
  pre: HTMLPreElement;
}

/** One job: a summary row (a button that expands it) and, when expanded, its details. */
class JobRow {
  readonly node = el('li', 'jp-BurstJob');
  job: IJobSummary;
  detail: IJobDetail | null = null;
  expanded = false;
  private readonly toggle = el('button', 'jp-BurstJob-row');
  private readonly nameNode = el('span', 'jp-BurstJob-name');
  private readonly stateNode = el('span', 'jp-BurstJob-state');
  private readonly backendNode = el('span', 'jp-BurstJob-backend');
  private readonly bar = el('span', 'jp-BurstJob-progress');
  private readonly barDone = el('span', 'jp-BurstJob-progressDone');
  private readonly barFailed = el('span', 'jp-BurstJob-progressFailed');
  private readonly countsNode = el('span', 'jp-BurstJob-counts');
  private readonly elapsedNode = el('span', 'jp-BurstJob-elapsed');
  private readonly paceNode = el('span', 'jp-BurstJob-pace');
  private readonly costNode = el('span', 'jp-BurstJob-cost');
  private readonly details = el('div', 'jp-BurstJob-details');
  private readonly logs = new Map<number, ILogView>();
  private fetchedAt = Date.now();
  private pending: Promise<boolean> | null = null;

  constructor(job: IJobSummary, private readonly onChange: () => void) {
    this.job = job;
    this.node.dataset.jobId = job.id;
    this.node.setAttribute('role', 'listitem');
    const detailsId = `jp-BurstJob-details-${job.id}`;
    this.details.id = detailsId;
    this.details.hidden = true;
    this.details.setAttribute('role', 'region');
    this.toggle.setAttribute('aria-controls', detailsId);
    this.toggle.setAttribute('aria-expanded', 'false');
    const top = el('span', 'jp-BurstJob-top');
    top.append(this.nameNode, this.stateNode);
    const meta = el('span', 'jp-BurstJob-meta');
    meta.append(this.backendNode, this.countsNode, this.elapsedNode, this.paceNode, this.costNode);
    this.bar.setAttribute('role', 'progressbar');
    this.bar.setAttribute('aria-valuemin', '0');
    this.bar.append(this.barDone, this.barFailed);
    this.toggle.append(top, this.bar, meta);
    this.toggle.addEventListener('click', () => void this.setExpanded(!this.expanded));
    this.node.append(this.toggle, this.details);
    this.update(job);
  }

  update(job: IJobSummary): void {
    this.job = job;
    this.fetchedAt = Date.now();
    const label = jobLabel(job);
    this.node.dataset.state = job.state;
    this.node.classList.toggle('jp-mod-active', job.active);
    if (!job.active) {
      // The job list can say a job ended before its details are read again: no Cancel for it meanwhile.
      this.details.querySelector('.jp-BurstJob-cancel')?.remove();
    }
    this.nameNode.textContent = label;
    this.nameNode.title = job.id;
    this.stateNode.textContent = job.state_label ?? job.state;
    this.stateNode.className = `jp-BurstJob-state jp-BurstJob-state-${job.state}`;
    this.stateNode.classList.toggle('jp-mod-ownerGone', Boolean(job.owner_gone));
    this.stateNode.title = job.owner_gone ? job.message : '';
    this.node.classList.toggle('jp-mod-ownerGone', Boolean(job.owner_gone));
    this.backendNode.textContent = job.backend;
    const finished = job.done + job.failed;
    const notes = [job.failed ? `${job.failed} failed` : '', job.cancelled ? `${job.cancelled} cancelled` : ''];
    const note = notes.filter(Boolean).join(', ');
    this.countsNode.textContent = `${finished}/${job.total}` + (note ? ` (${note})` : '');
    const total = Math.max(job.total, 1);
    this.barDone.style.width = `${(100 * job.done) / total}%`;
    this.barFailed.style.width = `${(100 * job.failed) / total}%`;
    this.bar.setAttribute('aria-valuemax', String(job.total));
    this.bar.setAttribute('aria-valuenow', String(finished));
    this.bar.setAttribute('aria-label', `Progress of ${label}: ${finished} of ${job.total} items`);
    this.paceNode.textContent = formatPace(job.rate ?? null, job.active ? job.left ?? null : null);
    this.paceNode.hidden = !this.paceNode.textContent;
    this.costNode.textContent = formatCost(job.cost.accrued) + (job.cost.estimate ? '*' : '');
    this.costNode.title =
      `${formatCost(job.cost.accrued)} accrued, ${formatCost(job.cost.projected)} projected` +
      (job.cost.label ? ` (${job.cost.label})` : '');
    this.toggle.setAttribute(
      'aria-label',
      `${label}: ${job.state_label ?? job.state} on ${job.backend}, ${finished} of ${job.total} items, ` +
        `cost ${formatCost(job.cost.accrued)}. ${this.expanded ? 'Collapse' : 'Expand'} details`
    );
    this.tick();
  }

  /** Elapsed time, advanced locally between polls while the job runs. */
  tick(): void {
    const extra = this.job.active ? (Date.now() - this.fetchedAt) / 1000 : 0;
    const elapsed = this.job.elapsed === null ? null : this.job.elapsed + extra;
    this.elapsedNode.textContent = formatDuration(elapsed);
  }

  async setExpanded(expanded: boolean): Promise<void> {
    this.expanded = expanded;
    this.node.classList.toggle('jp-mod-expanded', expanded);
    this.toggle.setAttribute('aria-expanded', String(expanded));
    this.details.hidden = !expanded;
    this.update(this.job);
    if (expanded) {
      await this.refreshDetail();
    }
    this.onChange();
  }

  /** Fetch the detail and the new log lines of the shown workers. Returns true if anything changed. */
  refreshDetail(): Promise<boolean> {
    if (!this.expanded) {
      return Promise.resolve(false);
    }
    // One at a time: two overlapping reads from the same log cursor would show lines twice.
    if (!this.pending) {
      this.pending = this.fetchDetail().finally(() => {
        this.pending = null;
      });
    }
    return this.pending;
  }

  private async fetchDetail(): Promise<boolean> {
    const detail = await getJob(this.job.id);
    let changed = JSON.stringify(detail) !== JSON.stringify(this.detail);
    this.detail = detail;
    if (changed) {
      this.update(detail);
      this.renderDetail();
    }
    const workers = this.shownWorkers();
    const replies = await Promise.all(
      workers.map(async w => {
        const view = this.logs.get(w.index);
        try {
          return await getLog(this.job.id, w.index, view ? view.cursor : null, LOG_TAIL_LINES);
        } catch (error) {
          return null;
        }
      })
    );
    for (const reply of replies) {
      const view = reply && this.logs.get(reply.worker);
      if (!reply || !view) {
        continue;
      }
      view.cursor = reply.next_cursor;
      if (reply.lines.length) {
        view.lines = view.lines.concat(reply.lines).slice(-LOG_TAIL_LINES);
        changed = true;
      }
      view.pre.textContent = view.lines.length ? view.lines.join('\n') : '(no output yet)';
      view.pre.scrollTop = view.pre.scrollHeight; // the newest line in view
    }
    return changed;
  }

  private shownWorkers(): IWorker[] {
    const list = (this.detail && this.detail.workers.list) || [];
    // Running workers first, then the most recent ones.
    return [...list]
      .sort((a, b) => Number(b.state === 'running') - Number(a.state === 'running') || b.index - a.index)
      .slice(0, MAX_LOG_WORKERS)
      .sort((a, b) => a.index - b.index);
  }

  private renderDetail(): void {
    const job = this.detail;
    if (!job) {
      return;
    }
    const focused = document.activeElement;
    const keepFocus = focused instanceof HTMLElement && this.details.contains(focused) ? focused.className : null;
    this.details.textContent = '';
    if (job.message) {
      this.details.append(el('p', 'jp-BurstJob-message', job.message));
    }
    const facts = el('dl', 'jp-BurstJob-facts');
    const fact = (name: string, value: string) => {
      facts.append(el('dt', '', name), el('dd', '', value));
    };
    const w = job.waves;
    fact('Waves', `${w.started} started, ${w.finished} finished of ${w.count} (${w.workers} workers, ${w.concurrency} at once)`);
    const c = job.outcome_counts;
    fact('Items', `${c.done} done, ${c.failed} failed, ${c.running} running, ${c.pending} pending` + (c.cancelled ? `, ${c.cancelled} cancelled` : ''));
    const cap = job.cost.cap !== null ? `, cap ${formatCost(job.cost.cap)}` : '';
    fact('Cost', `${formatCost(job.cost.accrued)} accrued, ${formatCost(job.cost.projected)} projected${cap}`);
    if (job.cost.label) {
      facts.append(el('dd', 'jp-BurstJob-note', job.cost.label));
    }
    const spec = job.spec;
    if (spec.cpu_units) {
      fact('Size', `${Number(spec.cpu_units) / 1024} vCPU / ${Number(spec.memory_mib) / 1024} GB`);
    }
    fact('Id', job.id);
    this.details.append(facts);

    if (job.failures.length) {
      const failures = el('ul', 'jp-BurstJob-failures');
      failures.setAttribute('aria-label', 'Failed items');
      for (const f of job.failures.slice(0, 5)) {
        failures.append(el('li', '', `item ${f.index}: ${f.error.split('\n')[0]}`));
      }
      this.details.append(failures);
    }

    const workers = el('ul', 'jp-BurstJob-workers');
    workers.setAttribute('aria-label', 'Workers');
    const shown = this.shownWorkers();
    for (const worker of shown) {
      const item = el('li', 'jp-BurstWorker');
      item.dataset.worker = String(worker.index);
      item.dataset.state = worker.state;
      item.append(el('div', 'jp-BurstWorker-head', `Worker ${worker.index} · wave ${worker.wave ?? '-'} · ${worker.state}`));
      let view = this.logs.get(worker.index);
      if (!view) {
        view = { cursor: null, lines: [], pre: el('pre', 'jp-BurstWorker-log') };
        this.logs.set(worker.index, view);
      }
      view.pre.setAttribute('aria-label', `Last lines of worker ${worker.index}'s log`);
      view.pre.textContent = view.lines.length ? view.lines.join('\n') : '(no output yet)';
      item.append(view.pre);
      workers.append(item);
    }
    const hidden = (job.workers.list || []).length - shown.length;
    if (hidden > 0) {
      workers.append(el('li', 'jp-BurstWorker-more', `${hidden} more workers (%burst_logs ${job.id} shows every log)`));
    }
    if (!shown.length) {
      workers.append(el('li', 'jp-BurstWorker-more', 'No worker started yet.'));
    }
    this.details.append(workers);

    if (job.active) {
      const cancel = el('button', 'jp-BurstJob-cancel jp-mod-styled jp-mod-warn', 'Cancel job');
      cancel.setAttribute('aria-label', `Cancel job ${jobLabel(job)}`);
      cancel.addEventListener('click', async () => {
        cancel.disabled = true; // one dialog at a time
        const done = await confirmAndCancel(job, () => {
          cancel.textContent = 'Cancelling…';
        });
        if (!done) {
          cancel.disabled = false;
          cancel.textContent = 'Cancel job';
        }
        this.onChange();
      });
      this.details.append(cancel);
    }
    if (keepFocus) {
      const again = this.details.getElementsByClassName(keepFocus.split(' ')[0])[0];
      if (again instanceof HTMLElement) {
        again.focus();
      }
    }
  }
}

export class BurstPanel extends Widget {
  private readonly list = el('ul', 'jp-BurstPanel-list');
  private readonly status = el('div', 'jp-BurstPanel-status');
  private readonly errorNode = el('div', 'jp-BurstPanel-error');
  private readonly empty = el('p', 'jp-BurstPanel-empty', 'No burst jobs yet. Run a cell with %%burst to start one.');
  private readonly rows = new Map<string, JobRow>();
  private version = '';
  private interval = MIN_INTERVAL;
  private timer: number | null = null;
  private clock: number | null = null;
  private inFlight: Promise<boolean> | null = null;
  private lastUpdate = 0;

  constructor(icon: LabIcon) {
    super();
    this.id = 'starburst-jobs';
    this.addClass('jp-BurstPanel');
    this.title.icon = icon;
    this.title.caption = 'Burst jobs';
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'Burst jobs');
    const header = el('header', 'jp-BurstPanel-header');
    header.append(el('h2', 'jp-BurstPanel-title', 'Burst jobs'));
    const refresh = el('button', 'jp-BurstPanel-refresh jp-mod-styled', '⟳');
    refresh.title = 'Refresh (Burst: refresh)';
    refresh.setAttribute('aria-label', 'Refresh burst jobs');
    refresh.addEventListener('click', () => void this.refresh());
    header.append(refresh);
    this.errorNode.setAttribute('role', 'alert');
    this.errorNode.hidden = true;
    this.status.setAttribute('aria-live', 'polite');
    this.list.setAttribute('role', 'list');
    this.list.setAttribute('aria-label', 'Burst jobs, running first');
    this.empty.hidden = true;
    this.node.append(header, this.errorNode, this.list, this.empty, this.status);
    document.addEventListener('visibilitychange', this.onVisibility);
  }

  dispose(): void {
    document.removeEventListener('visibilitychange', this.onVisibility);
    this.stop();
    super.dispose();
  }

  /** The job shown expanded, if any, else the only running one (for "Burst: cancel job"). */
  get selectedJob(): IJobSummary | null {
    for (const row of this.rows.values()) {
      if (row.expanded && row.job.active) {
        return row.job;
      }
    }
    return null;
  }

  get activeJobs(): IJobSummary[] {
    return [...this.rows.values()].map(r => r.job).filter(j => j.active);
  }

  /** Fetch now; reschedules the next poll. Resolves to whether anything changed. */
  refresh(): Promise<boolean> {
    if (!this.inFlight) {
      this.inFlight = this.fetch().finally(() => {
        this.inFlight = null;
        this.schedule();
      });
    }
    return this.inFlight;
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.interval = MIN_INTERVAL;
    void this.refresh();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.stop();
  }

  private readonly onVisibility = () => {
    if (document.hidden) {
      this.stop();
    } else if (this.isVisible) {
      this.interval = MIN_INTERVAL;
      void this.refresh();
    }
  };

  private get polling(): boolean {
    return this.isVisible && !document.hidden && !this.isDisposed;
  }

  private stop(): void {
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.clock !== null) {
      window.clearInterval(this.clock);
      this.clock = null;
    }
    this.node.dataset.polling = 'off';
  }

  private schedule(): void {
    this.stop();
    if (!this.polling) {
      return;
    }
    this.node.dataset.polling = String(this.interval);
    this.timer = window.setTimeout(() => void this.refresh(), this.interval);
    if (this.activeJobs.length) {
      this.clock = window.setInterval(() => this.rows.forEach(r => r.tick()), 1000);
    }
  }

  private async fetch(): Promise<boolean> {
    let changed = false;
    try {
      const reply = await listJobs();
      changed = reply.version !== this.version;
      this.version = reply.version;
      this.render(reply.jobs);
      const details = await Promise.all([...this.rows.values()].map(r => r.refreshDetail().catch(() => false)));
      changed = changed || details.some(Boolean);
      this.errorNode.hidden = true;
      this.lastUpdate = Date.now();
      const omitted = reply.omitted ? ` · ${reply.omitted} older jobs not shown` : '';
      this.status.textContent = `${reply.jobs.length} job${reply.jobs.length === 1 ? '' : 's'}${omitted}`;
    } catch (error) {
      this.errorNode.hidden = false;
      this.errorNode.textContent = `Could not load burst jobs: ${(error as Error).message}`;
    }
    const ceiling = this.activeJobs.length ? MAX_INTERVAL_ACTIVE : MAX_INTERVAL_IDLE;
    this.interval = changed ? MIN_INTERVAL : Math.min(this.interval * 2, ceiling);
    this.node.dataset.lastUpdate = String(this.lastUpdate);
    return changed;
  }

  private render(jobs: IJobSummary[]): void {
    const seen = new Set<string>();
    let previous: HTMLElement | null = null;
    for (const job of jobs) {
      seen.add(job.id);
      let row = this.rows.get(job.id);
      if (row) {
        row.update(job);
      } else {
        row = new JobRow(job, () => void this.refresh());
        this.rows.set(job.id, row);
      }
      // Keep the server's order (running first) without rebuilding rows.
      const expected: ChildNode | null = previous ? previous.nextSibling : this.list.firstChild;
      if (expected !== row.node) {
        this.list.insertBefore(row.node, expected);
      }
      previous = row.node;
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.node.remove();
        this.rows.delete(id);
      }
    }
    this.empty.hidden = jobs.length > 0;
  }
}
