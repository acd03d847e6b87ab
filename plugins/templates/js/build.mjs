// Builds {{name}}.wasm from app.js (npm install first). ComponentizeJS embeds its
// JavaScript engine; no ahead-of-time compilation is asked for, so nothing else is
// downloaded.
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';

const { component } = await componentize({
  sourcePath: 'app.js',
  witPath: 'wit',
  worldName: '{{world}}',
  // The sandbox grants no clock, randomness or network: do not import them.
  disableFeatures: ['random', 'clocks', 'http', 'fetch-event'],
});
await writeFile('{{name}}.wasm', component);
console.log('built {{name}}.wasm');
