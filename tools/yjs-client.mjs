// A Yjs client as any Yjs application would be one: the npm `yjs` and `y-websocket`
// packages, unchanged, editing a Switchboard document through /yjs. Used by the Rust tests
// (tests/documents.rs) and Playwright (end2end/tests/documents.spec.ts) as the foreign client.
//
//   node tools/yjs-client.mjs <ws://host/yjs> <room>/<document> [--name N] [--token T]
//        [--insert TEXT] [--expect TEXT] [--timeout-ms N]
//
// --name: a guest's name (servers in guest mode); --token: an API token (any server).
//
// Prints one JSON line once synced ({"synced": text}), inserts TEXT at the end, waits until
// the text contains every --expect, prints {"final": text} and exits 0; exits 1 on timeout.
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import WebSocket from 'ws';

const [url, room, ...rest] = process.argv.slice(2);
const options = { name: 'node', token: null, insert: null, expect: [], timeoutMs: 10000 };
for (let i = 0; i < rest.length; i += 2) {
  const [flag, value] = [rest[i], rest[i + 1]];
  if (flag === '--name') options.name = value;
  else if (flag === '--token') options.token = value;
  else if (flag === '--insert') options.insert = value;
  else if (flag === '--expect') options.expect.push(value);
  else if (flag === '--timeout-ms') options.timeoutMs = Number(value);
  else throw new Error(`unknown flag ${flag}`);
}

const doc = new Y.Doc();
const text = doc.getText('text');
const provider = new WebsocketProvider(url, room, doc, {
  WebSocketPolyfill: WebSocket,
  params: options.token === null ? { name: options.name } : { token: options.token },
});
provider.awareness.setLocalStateField('user', { name: options.name, color: '#0a7' });

const timer = setTimeout(() => {
  console.log(JSON.stringify({ timeout: text.toString() }));
  process.exit(1);
}, options.timeoutMs);

const done = () => options.expect.every((wanted) => text.toString().includes(wanted));
const finish = () => {
  clearTimeout(timer);
  console.log(JSON.stringify({ final: text.toString() }));
  provider.destroy();
  setTimeout(() => process.exit(0), 50);
};

provider.once('sync', () => {
  console.log(JSON.stringify({ synced: text.toString() }));
  if (options.insert !== null) {
    text.insert(text.length, options.insert);
  }
  if (done()) {
    // Give the edit time to leave before closing.
    setTimeout(finish, 300);
  } else {
    text.observe(() => {
      if (done()) finish();
    });
  }
});
