// Copies the UMD bundle of the @stomp/stompjs version pinned in package-lock.json into
// vendor/ (committed), and records its version and SHA-256 in vendor/stompjs.version.
// Run after changing the pinned version: `npm ci && npm run vendor`.
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync('node_modules/@stomp/stompjs/package.json', 'utf8'));
const src = 'node_modules/@stomp/stompjs/bundles/stomp.umd.min.js';
mkdirSync('vendor', { recursive: true });
copyFileSync(src, 'vendor/stomp.umd.min.js');
copyFileSync('node_modules/@stomp/stompjs/LICENSE', 'vendor/LICENSE.stompjs');
const sha = createHash('sha256').update(readFileSync(src)).digest('hex');
writeFileSync('vendor/stompjs.version', `@stomp/stompjs ${pkg.version} sha256:${sha}\n`);
console.log(`vendored @stomp/stompjs ${pkg.version} (sha256 ${sha})`);
