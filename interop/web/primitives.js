// The primitives mode of the interoperability page (mode=primitives): RPC
// both ways, data streams both ways and chat between livekit-client and a
// callstate participant (query parameter peer). See interop_test.go,
// TestBrowserPrimitives, for the exchange; window.results reports it.
import { Room, RoomEvent, RpcError } from 'livekit-client';

const text = new TextDecoder();

// jsonish returns n bytes (ASCII) of JSON-like records, which deflate
// shrinks; interop's jsonish in Go makes the same.
export function jsonish(n) {
  let s = '';
  for (let i = 0; s.length < n; i++) s += `{"id":${i},"name":"user-${(i * 7919) % 10007}","ok":${i % 3 === 0}},`;
  return s.slice(0, n);
}

export function runPrimitives(q) {
  const peer = q.get('peer');
  const results = {
    done: false,
    error: null,
    rpc: {}, // browser -> Go calls, by name: {ok, payload | code, message, data}
    calledByGo: [], // {method, caller, length}
    bytes: [], // byte streams from Go
    texts: [], // text streams from Go
    chats: [], // lk.chat text streams from Go
    compressed: [], // Go's compressed sendText / sendBytes: {topic, size, n, ok}
    legacyChats: [], // RoomEvent.ChatMessage
    browserDone: false,
    left: false,
  };
  window.results = results;
  const fail = (err) => {
    results.error = String(err?.stack ?? err);
  };
  const check = () => {
    results.done =
      results.browserDone &&
      results.left &&
      results.bytes.length > 0 &&
      results.texts.length > 0 &&
      results.chats.length > 0 &&
      results.compressed.length >= 3;
  };

  const room = new Room({ adaptiveStream: false, dynacast: false });
  room.registerRpcMethod('echo', async (d) => {
    results.calledByGo.push({ method: 'echo', caller: d.callerIdentity, length: d.payload.length });
    return 'echo:' + d.payload;
  });
  room.registerRpcMethod('fail', async () => {
    throw new RpcError(2001, 'nope', 'js detail');
  });
  room.registerRpcMethod('slow', () => new Promise(() => {}));
  room.registerRpcMethod('leave', () => {
    setTimeout(() => {
      results.left = true;
      check();
      room.disconnect();
    }, 100);
    return new Promise(() => {});
  });
  room.registerByteStreamHandler('go-bytes', async (reader, p) => {
    const info = reader.info;
    let n = 0;
    let head = '';
    let chunks = 0;
    for await (const c of reader) {
      if (n === 0) head = text.decode(c.slice(0, 16));
      n += c.byteLength;
      chunks++;
    }
    results.bytes.push({ from: p.identity, name: info.name, mime: info.mimeType, attrs: info.attributes, size: info.size ?? null, n, head, chunks });
    check();
  });
  room.registerTextStreamHandler('go-text', async (reader, p) => {
    const parts = [];
    for await (const c of reader) parts.push(c);
    results.texts.push({ from: p.identity, parts: parts.length, text: parts.join(''), attrs: reader.info.attributes });
    check();
  });
  // Go compresses these (the browser advertises deflate-raw); the content
  // is jsonish of its length.
  room.registerTextStreamHandler('go-ztext', async (reader) => {
    const s = await reader.readAll();
    results.compressed.push({ topic: 'go-ztext', size: reader.info.size ?? null, n: s.length, ok: s === jsonish(s.length) });
    check();
  });
  room.registerByteStreamHandler('go-zbytes', async (reader) => {
    const parts = [];
    for await (const c of reader) parts.push(c);
    const s = text.decode(await new Blob(parts).arrayBuffer());
    results.compressed.push({ topic: 'go-zbytes', size: reader.info.size ?? null, n: s.length, ok: s === jsonish(s.length) });
    check();
  });
  room.registerTextStreamHandler('lk.chat', async (reader, p) => {
    results.chats.push({ from: p.identity, text: await reader.readAll() });
    check();
  });
  room.on(RoomEvent.ChatMessage, (msg, p) => {
    if (p && p.identity === peer) results.legacyChats.push({ from: p.identity, text: msg.message });
  });

  // Control messages from Go, to sequence the incremental stream.
  const waiters = new Map();
  room.on(RoomEvent.DataReceived, (payload, _p, _kind, topic) => {
    if (topic !== 'ctl') return;
    const s = text.decode(payload);
    waiters.get(s)?.();
    waiters.set(s, null);
  });
  const waitCtl = (s) =>
    new Promise((resolve) => {
      if (waiters.has(s) && waiters.get(s) === null) return resolve();
      waiters.set(s, resolve);
    });

  const lp = () => room.localParticipant;
  const call = async (name, method, payload, responseTimeout) => {
    try {
      const r = await lp().performRpc({ destinationIdentity: peer, method, payload, responseTimeout });
      results.rpc[name] = { ok: true, payload: r };
    } catch (e) {
      results.rpc[name] = { ok: false, code: e.code ?? null, message: e.message ?? String(e), data: e.data ?? null };
    }
  };

  async function scenario() {
    await call('echo', 'echo', 'hi');
    await call('fail', 'fail', '');
    await call('nosuch', 'nosuch', '');
    await call('timeout', 'hold', 'timeout', 1000);
    await call('big', 'echo', 'x'.repeat(40000));

    const file = new Uint8Array(3 << 20);
    for (let i = 0; i < file.length; i++) file[i] = i & 255;
    // Sent as it is (compress: false): its periodic content would deflate
    // to a chunk or two, and this file is the test of an incremental read.
    await lp().sendFile(new File([file], 'browser.bin', { type: 'application/x-browser' }), {
      topic: 'browser-file',
      destinationIdentities: [peer],
      compress: false,
    });
    // Compressed, as callstate advertises deflate-raw: a text inline in
    // its header, a text in chunks, a file.
    await lp().sendText(jsonish(6000), { topic: 'browser-ztext', destinationIdentities: [peer] });
    await lp().sendText(jsonish(200000), { topic: 'browser-ztext', destinationIdentities: [peer] });
    const records = new TextEncoder().encode(jsonish(1 << 20));
    await lp().sendFile(new File([records], 'records.json', { type: 'application/json' }), {
      topic: 'browser-zfile',
      destinationIdentities: [peer],
    });

    const w = await lp().streamText({ topic: 'browser-text', destinationIdentities: [peer] });
    await w.write('part one|');
    await waitCtl('got part one');
    await w.write('part two');
    await w.close();

    await lp().sendText('hello from browser chat', { topic: 'lk.chat' });
    await lp().sendChatMessage('legacy hello');
    results.browserDone = true;
    check();
    // The caller leaves during the call: Go calls 'leave' once this started.
    lp()
      .performRpc({ destinationIdentity: peer, method: 'hold', payload: 'leaving', responseTimeout: 30000 })
      .catch(() => {});
  }

  async function main() {
    await room.connect(q.get('url'), q.get('token'), { autoSubscribe: false });
    if (!room.remoteParticipants.has(peer)) {
      await new Promise((resolve) => {
        const on = (p) => {
          if (p.identity !== peer) return;
          room.off(RoomEvent.ParticipantConnected, on);
          resolve();
        };
        room.on(RoomEvent.ParticipantConnected, on);
      });
    }
    await scenario();
  }
  main().catch(fail);
}
