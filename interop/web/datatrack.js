// The data track half of callstate's interoperability test (see
// ../interop_test.go, TestBrowserDataTracks). The app joins the room named
// by its token and:
//
//   - publishes a data track named "browser-frames" and, once the Go
//     participant says it is subscribed (a reliable packet on topic
//     dt.ready), pushes one frame of each size in `sizes`, each frame's
//     content a function of its length (see frameOf), waiting for Go's
//     acknowledgement (topic dt.ack, the size as text) before the next and
//     pushing again when none comes within a second (the track is lossy);
//   - subscribes with RemoteDataTrack.subscribe() to every data track the Go
//     participant publishes, checks each frame byte for byte against
//     frameOf, and acknowledges it (topic dt.got, "size ok|bad").
//
// window.results records what it saw; results.done is set once every size
// went both ways. Query parameters: url, token, peer, sizes (comma
// separated), singlePC.
import { Room, RoomEvent } from 'livekit-client';

const q = new URLSearchParams(location.search);
const peer = q.get('peer');
const sizes = q.get('sizes').split(',').map(Number);
const text = new TextDecoder();
const bytes = new TextEncoder();

const results = {
  done: false,
  error: null,
  pushed: [], // sizes Go acknowledged
  pushAttempts: 0,
  received: {}, // size -> "ok" | "bad"
  tracks: [], // names of Go's tracks seen
};
window.results = results;

// frameOf must match the Go test's dtFrame.
function frameOf(n) {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = ((i * 31) ^ n ^ (n >> 8)) & 0xff;
  return b;
}

function check() {
  results.done =
    results.pushed.length === sizes.length && sizes.every((n) => results.received[n] === 'ok');
}

function fail(err) {
  results.error = String(err?.stack ?? err);
}

const room = new Room({ adaptiveStream: false, dynacast: false, singlePeerConnection: q.get('singlePC') !== 'false' });
let ready = null;
const readyPromise = new Promise((r) => (ready = r));
let acked = null;
room.on(RoomEvent.DataReceived, (payload, p, _kind, topic) => {
  if (p?.identity !== peer) return;
  if (topic === 'dt.ready') ready();
  if (topic === 'dt.ack' && acked) acked(Number(text.decode(payload)));
});

async function readTrack(track) {
  results.tracks.push(track.info.name);
  const reader = track.subscribe().getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    const n = value.payload.byteLength;
    const want = frameOf(n);
    let ok = true;
    for (let i = 0; i < n; i++) if (value.payload[i] !== want[i]) { ok = false; break; }
    results.received[n] = ok ? 'ok' : 'bad';
    await room.localParticipant.publishData(bytes.encode(`${n} ${ok ? 'ok' : 'bad'}`), { reliable: true, topic: 'dt.got', destinationIdentities: [peer] });
    check();
  }
}
room.on(RoomEvent.DataTrackPublished, (track) => {
  if (track.publisherIdentity === peer) readTrack(track).catch(fail);
});

async function pushAll(track) {
  await readyPromise;
  for (const n of sizes) {
    const frame = frameOf(n);
    for (;;) {
      const got = new Promise((r) => (acked = (size) => size === n && r(true)));
      results.pushAttempts++;
      try {
        await track.tryPush({ payload: frame });
      } catch (e) {
        // Dropped: the buffer was full; try again below.
      }
      const ok = await Promise.race([got, new Promise((r) => setTimeout(() => r(false), 1000))]);
      if (ok) break;
    }
    results.pushed.push(n);
    check();
  }
}

async function main() {
  await room.connect(q.get('url'), q.get('token'), { autoSubscribe: false });
  for (const p of room.remoteParticipants.values()) {
    if (p.identity !== peer) continue;
    for (const t of p.dataTracks?.values?.() ?? []) readTrack(t).catch(fail);
  }
  const track = await room.localParticipant.publishDataTrack({ name: 'browser-frames' });
  await pushAll(track);
}
main().catch(fail);
