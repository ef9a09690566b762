// A LiveKit browser app for callstate's interoperability test. It joins the
// room named by its token and, once it sees its peer's metadata, sets its own
// metadata to JSON user data and sends the peer an app message and a data
// packet with a topic. It records what it observes of the peer and the room in
// window.results; results.done tells that it has seen everything the test
// sends it.
//
// Query parameters: url, token, peer (the Go participant's identity),
// userData (JSON), appMessage (JSON), topic and payload (the data packet),
// singlePC ("false" joins with two PeerConnections instead of
// livekit-client's default of one).
// With mode=primitives it runs primitives.js instead.
import { Room, RoomEvent } from 'livekit-client';
import { runPrimitives } from './primitives.js';

const APP_MESSAGE_TOPIC = 'callstate.app-message';
const READY_TOPIC = 'interop.ready';

const q = new URLSearchParams(location.search);
const primitives = q.get('mode') === 'primitives';
const peer = q.get('peer');
const text = new TextDecoder();
const bytes = new TextEncoder();

const results = {
  done: false,
  error: null,
  identity: null,
  sent: false,
  connectMs: null, // how long room.connect took
  peerMetadata: null, // the peer's metadata, as the latest change left it
  peerMetadataEvents: 0,
  roomMetadata: null, // raw room metadata, as the latest change left it
  roomMetadataObject: null, // the same, parsed (when it is a JSON object)
  appMessages: [], // {from, data}: data parsed from the JSON payload
  data: [], // {from, topic, payload}: other data packets, payload as text
};
if (!primitives) window.results = results;

function parseObject(s) {
  try {
    const v = JSON.parse(s);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

function check() {
  const session = results.roomMetadataObject;
  results.done =
    results.sent &&
    results.peerMetadata !== null &&
    session !== null &&
    Object.keys(session).some((k) => k !== '__callstate') &&
    results.appMessages.length > 0 &&
    results.data.length > 0;
}

const room = new Room({
  adaptiveStream: false,
  dynacast: false,
  singlePeerConnection: q.get('singlePC') !== 'false',
});

room.on(RoomEvent.ParticipantMetadataChanged, (_prev, p) => {
  if (p.identity !== peer) return;
  results.peerMetadata = p.metadata ?? '';
  results.peerMetadataEvents++;
  answer();
  check();
});
room.on(RoomEvent.RoomMetadataChanged, (metadata) => {
  results.roomMetadata = metadata;
  results.roomMetadataObject = parseObject(metadata);
  check();
});
room.on(RoomEvent.DataReceived, (payload, p, _kind, topic) => {
  const from = p?.identity ?? null;
  const s = text.decode(payload);
  if (topic === APP_MESSAGE_TOPIC) {
    let data;
    try {
      data = JSON.parse(s);
    } catch {
      data = { invalidJSON: s };
    }
    results.appMessages.push({ from, data });
  } else {
    results.data.push({ from, topic: topic ?? null, payload: s });
  }
  check();
});

let connected = false;
let answering = null;
function answer() {
  if (!connected || answering || results.peerMetadata === null || !room.remoteParticipants.has(peer)) return;
  const lp = room.localParticipant;
  const to = { reliable: true, destinationIdentities: [peer] };
  answering = Promise.all([
    lp.setMetadata(q.get('userData')),
    lp.publishData(bytes.encode(q.get('appMessage')), { ...to, topic: APP_MESSAGE_TOPIC }),
    lp.publishData(bytes.encode(q.get('payload')), { ...to, topic: q.get('topic') }),
  ]).then(() => {
    results.sent = true;
    check();
  }, fail);
}

function fail(err) {
  results.error = String(err?.stack ?? err);
}

async function main() {
  const t0 = performance.now();
  await room.connect(q.get('url'), q.get('token'), { autoSubscribe: false });
  results.connectMs = Math.round(performance.now() - t0);
  connected = true;
  results.identity = room.localParticipant.identity;
  // State that arrived with the join rather than as a change.
  const p = room.remoteParticipants.get(peer);
  if (results.peerMetadata === null && p?.metadata) results.peerMetadata = p.metadata;
  if (results.roomMetadata === null && room.metadata) {
    results.roomMetadata = room.metadata;
    results.roomMetadataObject = parseObject(room.metadata);
  }
  // Tell the Go participant that this room is connected: livekit-client
  // drops participant events that arrive before (it emits them only once
  // connected), and connecting takes longer with two PeerConnections, so
  // Go waits for this before it changes anything the test expects to be
  // seen as a change.
  await room.localParticipant.publishData(bytes.encode('ready'), { reliable: true, topic: READY_TOPIC });
  answer();
}
if (primitives) runPrimitives(q);
else main().catch(fail);
