// Package sessionstate keeps session data (one JSON object per room, which
// any permitted participant may replace or shallow-merge) consistent on top
// of LiveKit room metadata, which the server only replaces whole.
//
// # Model
//
// The room metadata is a register: each UpdateRoomMetadata replaces it, the
// last write applied by the server wins, and the server broadcasts values in
// the order it applied them. The server may coalesce updates that come in
// quick succession, so a participant may never see some intermediate value,
// but it always receives the latest one. When participants shallow-merge
// concurrently, each computes its value from what it has seen, so the value
// applied last can lack keys merged by the others: a lost update.
//
// # Encoding
//
// Session data is stored as the room metadata object itself, plus one
// reserved top-level key, ReservedKey ("__callstate"), which the session
// data never shows:
//
//	{"score":3,"topic":"x","__callstate":{"v":1,"h":"9c1a…","w":["alice","bob"],
//	 "e":[0,0],"k":{"score":[7,0],"topic":[5,1],"old":[6,1]}}}
//
// Every write carries a stamp [Lamport clock, writer identity], ordered by
// clock and then by writer; w lists the writers and stamps name them by
// index. k holds the stamp of the latest write of each key; a key in k but
// not in the data was deleted (a tombstone), so a stale copy cannot bring it
// back. e is the epoch, the stamp of the latest Replace: every key written
// before it and not part of it is gone, so older tombstones are dropped. h is
// a digest of the data; metadata whose data no longer matches it (edited by a
// program unaware of the stamps) counts as unstamped. The encoding is
// canonical: the same state gives the same string everywhere.
//
// Each participant runs a Replica: it joins (per key, keeps the higher
// stamp; keeps the higher epoch) every observed value and its own committed
// writes into its best known state, and keeps its Lamport clock at or above
// every clock seen, so each new write is stamped after everything its writer
// has seen. A write sends the best known state plus its changes, so the
// writer's own earlier writes that are not yet echoed are not lost.
//
// Metadata without valid stamps (a plain JSON object set by a LiveKit app or
// RoomService, or an object edited without updating the stamps) is an
// authoritative Replace by the outside writer "" with epoch
// [largest clock observed + 1, ""]: ordered after every write its observer
// had seen. Metadata that is not a JSON object is such a Replace by an empty
// object: the session data is then empty (the raw metadata is the caller's
// to expose).
//
// # Repair
//
// After each observed value a Replica compares the value's session data with
// its best known state. A difference means some write is missing from the
// room metadata (or a deleted or replaced key reappeared), and is blamed on
// the writer of the newer stamp (the epoch's writer for a key a Replace
// removed). Only that writer repairs its own writes (Observation.Repair),
// by sending its best known state; a value it had already seen being
// overwritten is a certain loss (RepairNow), while its own write whose echo
// has not been observed yet may merely be in flight (RepairLater: repair
// after a grace period if still missing). For writers no longer present, and
// for the outside writer, the caller picks a stand-in (RepairFor).
//
// # Guarantee
//
// Agreement: a participant's session data is always the session data of the
// room metadata it last received, so all participants see the same values in
// the same order (a participant that joins later sees a suffix). The values
// seen between a lost update and its repair lack the lost keys, for everyone.
//
// Convergence: once writes stop, and provided every write lost from the room
// metadata is repaired (see below), the room metadata settles after finitely
// many repairs on the join of all committed writes. That is, per key, the
// write with the highest stamp decides (a merge sets or, with null, deletes
// the key); a key is absent if its latest write is older than the latest
// Replace and not part of it. In particular concurrent shallow merges of
// distinct keys all survive, a deleted key stays deleted unless written with
// a higher stamp, and a write made after its writer saw another write wins
// over it. Concurrent writes are ordered by stamp, not by the order the
// server applied them.
//
// The repair proviso fails, and a lost write stays lost, when:
//   - its writer left before repairing it and no other participant repairs on
//     its behalf (RepairFor), or no participant still present observed the
//     write (because it was overwritten before the server broadcast it);
//   - the repair cannot be written (the writer lost the permission to update
//     room metadata, or the value exceeds the server's metadata limit);
//   - a writer rejoined under the same identity: its new Replica knows only
//     what it observes, so the previous session's unrepaired writes are gone;
//   - an outside Replace was overwritten by a concurrent stale write before
//     anyone observed it.
//
// Participants agree on the order of a write that is concurrent with an
// outside Replace only if they observed the same values before it (the
// Replace's epoch depends on the largest clock observed); a participant that
// joined in between may order it differently, which can leave its best known
// state different from the others' until a later write. Agreement on the
// visible session data is unaffected.
//
// Tombstones of keys deleted by shallow merges accumulate until the next
// Replace; the stamps cost roughly the key length plus ten bytes per key.
package sessionstate
