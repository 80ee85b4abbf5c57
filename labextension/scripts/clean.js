#!/usr/bin/env node
// Remove the compiled TypeScript and the built labextension.
const fs = require('fs');
const path = require('path');
const root = path.resolve(__dirname, '..');
const pkg = require(path.join(root, 'package.json'));
for (const target of ['lib', 'tsconfig.tsbuildinfo', pkg.jupyterlab.outputDir]) {
  fs.rmSync(path.resolve(root, target), { recursive: true, force: true });
}
