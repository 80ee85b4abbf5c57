#!/usr/bin/env node
/*
 * Build the prebuilt (federated) labextension into ../starburst_jupyter/server/labextension with
 * jupyter_builder (what `jupyter labextension build` runs since JupyterLab 4.6).
 *
 * The builder needs JupyterLab's core metadata (which packages the lab shares as singletons, at
 * which versions). Left alone it fetches @jupyterlab/core-meta, which the npm registry does not
 * have, then GitHub. core/package.json is that metadata, copied from jupyterlab 4.6.6's
 * staging/package.json: passing it makes the build offline and lets `pip install` build with only
 * jupyter_builder (small) in its isolated environment instead of all of jupyterlab. Refresh it
 * when moving to a new JupyterLab minor version.
 *
 * The Python used is the first of $STARBURST_BUILD_PYTHON, the interpreter of `jlpm` on PATH
 * (inside `pip install`'s isolated build environment: the one that has jupyter_builder), python3,
 * python, that imports jupyter_builder.
 */
const { execFileSync, spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const CORE = path.resolve(__dirname, '..', 'core', 'package.json');
const PROBE = 'import jupyter_builder.main';

function shebangOf(command) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const file = path.join(dir, command);
    try {
      const [first, second] = fs.readFileSync(file, 'utf8').split('\n', 2);
      // pip writes `#!/bin/sh` then `'''exec' '/long/path/python' "$0" "$@"` for long interpreter paths.
      const exec = /^'''exec' '([^']+)'/.exec(second || '');
      if (first.startsWith('#!/bin/sh') && exec) {
        return exec[1];
      }
      if (first.startsWith('#!') && !first.includes('/env ')) {
        return first.slice(2).trim();
      }
    } catch (e) {
      // not here
    }
  }
  return null;
}

function findPython() {
  const candidates = [process.env.STARBURST_BUILD_PYTHON, shebangOf('jlpm'), 'python3', 'python'];
  for (const python of candidates.filter(Boolean)) {
    try {
      execFileSync(python, ['-c', PROBE], { stdio: 'ignore' });
      return python;
    } catch (e) {
      // try the next one
    }
  }
  throw new Error(
    'No Python with jupyter_builder found (tried ' + candidates.filter(Boolean).join(', ') +
      '); set STARBURST_BUILD_PYTHON to one.'
  );
}

const python = findPython();
const args = ['-m', 'jupyter_builder.main', 'build', '--core-package-file', CORE];
if (process.argv.includes('--development')) {
  args.push('--development');
}
args.push(path.resolve(__dirname, '..'));
console.log('[starburst] ' + python + ' ' + args.join(' '));
const result = spawnSync(python, args, { stdio: 'inherit' });
process.exit(result.status === null ? 1 : result.status);
