// Copies the browser bundles of the versions pinned in package-lock.json into vendor/
// (committed, so cargo build never needs npm) and records each version and SHA-256 in
// vendor/<name>.version: @stomp/stompjs's UMD bundle and sockjs-client's (for the chat
// page's SockJS fallback). Run after changing a pinned version: `npm ci && npm run vendor`.
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';

const bundles = [
  { pkg: '@stomp/stompjs', file: 'bundles/stomp.umd.min.js', out: 'stomp.umd.min.js', name: 'stompjs' },
  { pkg: 'sockjs-client', file: 'dist/sockjs.min.js', out: 'sockjs.min.js', name: 'sockjs' },
];
mkdirSync('vendor', { recursive: true });
for (const b of bundles) {
  const dir = `node_modules/${b.pkg}`;
  const { version } = JSON.parse(readFileSync(`${dir}/package.json`, 'utf8'));
  const src = `${dir}/${b.file}`;
  copyFileSync(src, `vendor/${b.out}`);
  copyFileSync(`${dir}/LICENSE`, `vendor/LICENSE.${b.name}`);
  const sha = createHash('sha256').update(readFileSync(src)).digest('hex');
  writeFileSync(`vendor/${b.name}.version`, `${b.pkg} ${version} sha256:${sha}\n`);
  console.log(`vendored ${b.pkg} ${version} (sha256 ${sha})`);
}
