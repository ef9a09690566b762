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
//	 "e":[0,0],"k":{"old":[6,1],"score":[7,0],"topic":[5,1]}}}
//
// Every write carries a stamp [Lamport clock, writer identity] (the clock at
// most MaxClock), ordered by
// clock and then by writer; w lists the writers and stamps name them by
// index. k holds the stamp of the latest write of each key; a key in k but
// not in the data was deleted (a tombstone), so a stale copy cannot bring it
// back. e is the epoch, the stamp of the latest Replace ([0,0] before any):
// every key written before it and not part of it is gone, so older
// tombstones are dropped. h is a digest of the data; metadata whose data no
// longer matches it (edited by a program unaware of the stamps) counts as
// unstamped. The encoding is canonical: data keys sorted, values compacted
// but otherwise kept as written (numbers keep their text), the reserved key
// last; the same state gives the same string everywhere.
//
// Each participant runs a Replica: it joins (per key, keeps the higher
// stamp; keeps the higher epoch) every observed value and its own committed
// writes into its best known state, and keeps its Lamport clock at or above
// every clock seen, so each new write is stamped after everything its writer
// has seen. A write sends the best known state plus its changes, so the
// writer's own earlier writes that are not yet echoed are not lost.
//
// Metadata without valid stamps (a plain JSON object set by a LiveKit app or
// RoomService, an object edited without updating the stamps, or stamps that
// fail validation: see below) is an authoritative Replace by the outside
// writer "" with epoch [largest clock observed in the room metadata + 1, ""]:
// ordered after every write that had appeared in the room metadata, so that
// every stamp observed before it, whatever its writer, is superseded and
// never written back. Metadata that is not a JSON object is such a Replace
// by an empty object: the session data is then empty (the raw metadata is
// the caller's to expose).
//
// # Untrusted stamps
//
// Anyone whose token has the roomAdmin grant can write the room metadata,
// reserved key included, without ever joining; so stamps read from it are
// validated, and bounded so that no value can exhaust, freeze or out-rank
// the clock for good:
//   - a clock above MaxClock (2^53-1) invalidates the reserved object: the
//     metadata counts as an outside Replace of its data (as above);
//   - clocks grow by one per write or outside Replace, so a room never gets
//     near 2^52 by use; only stamps written from outside take a replica
//     there. A replica whose next stamp would reach 2^52 resets instead: its
//     write is a Replace by the session data it knows, stamped afresh from
//     clock 1 by its writer, plus the write itself stamped just after (a
//     repair, likewise, without the write). A replica that knows stamps at
//     2^52 or more forgets everything on observing metadata whose clocks
//     are all below 2^51 (a reset, or a plain object), and starts over from
//     that value as a newcomer would, keeping only its own writes still in
//     flight or known lost (a reset built without them is then repaired);
//     an outside Replace observed where its epoch would reach 2^52 - 1
//     starts the clock over, forgetting everything, own writes included
//     (epoch [1, ""], as a newcomer computes it), decided on the observed
//     stamps alone so that every replica orders it alike. Concurrent resets merge
//     like any concurrent writes: the base of one wins, every reset's write
//     survives. So writes never fail for want of a clock, and a forged key,
//     tombstone or epoch lasts until the next write or outside Replace.
//
// # Repair
//
// After each observed value a Replica compares the value's session data with
// its best known state. A difference means some write is missing from the
// room metadata (or a deleted or replaced key reappeared), and is blamed on
// the writer of the newer stamp (the epoch's writer for a key a Replace
// removed). Only that writer repairs its own writes (Need), by sending its
// best known state; other writers' losses are reported (Lost) so that a
// stand-in can repair for writers no longer present (RepairFor). A lost
// write the replica had already seen in the room metadata is a certain loss
// (RepairNow); its own write whose echo has not been observed yet may still
// be in flight (RepairLater).
//
// # Use
//
// The caller (the Room) serialises calls to a Replica and:
//   - observes the room metadata of the join response, then that of every
//     room update, in order;
//   - writes with Prepare, checks Update.Size against the server's room
//     metadata limit, sends Update.Metadata with UpdateRoomMetadata, and on
//     success calls Commit with the metadata of the server's answer; one
//     write in flight at a time;
//   - after every Observe and Commit, consults Need and Lost. RepairNow: wait
//     until no new metadata has arrived for about one delivery delay (at
//     most a few of them), plus rank times about one round trip, where rank
//     is the writer's position among the present writers blamed (itself and
//     Lost, sorted), then call Repair if Need still asks for it. RepairLater:
//     call Repair if it is still reported after a grace period of a few round
//     trips since it was first reported. Lost naming writers that are not
//     present ("" included): the lowest present identity calls RepairFor on
//     the RepairNow schedule.
//
// The delays let one repair that carries everything settle a burst of
// concurrent writes, instead of each writer repairing with partial
// knowledge and overwriting the others' repairs.
//
// # Guarantee
//
// Agreement: a participant's session data is always the session data of the
// room metadata it last received, so all participants see the same values in
// the same order (a participant that joins later sees a suffix). Between a
// lost update and its repair, the values seen lack the lost keys, for
// everyone.
//
// Convergence: once writes stop, and provided every write lost from the room
// metadata is repaired (see below), the room metadata settles after finitely
// many repairs on the join of all committed writes. That is, per key, the
// write with the highest stamp decides (a merge sets the key or, with null,
// deletes it); a key is absent if its latest write is older than the latest
// Replace and not part of it. In particular concurrent shallow merges of
// distinct keys all survive, a deleted key stays deleted unless written with
// a higher stamp, and a write made after its writer saw another write wins
// over it. Concurrent writes are ordered by stamp, not by the order the
// server applied them.
//
// The repair proviso fails, and a lost write stays lost, when:
//   - its writer left before repairing it and no participant still present
//     had observed it in the room metadata (the server overwrote it before
//     broadcasting it), or no participant repairs on its behalf;
//   - the repair cannot be written (the writer lost the permission to update
//     room metadata, or the value exceeds the server's metadata limit);
//   - a writer rejoined under the same identity: its new Replica knows only
//     what it observes, so the previous session's unrepaired writes are gone;
//   - an outside Replace was overwritten by a concurrent stale write before
//     any participant observed it.
//
// Participants agree on how a write concurrent with an outside Replace is
// ordered only if they observed the same metadata before the Replace (its
// epoch depends on the largest clock observed). A participant that joined
// in between may order it differently, and so blame differently, until a
// later write carries the epoch. Agreement on the session data shown is
// unaffected.
//
// Tombstones of keys deleted by shallow merges accumulate until the next
// Replace; each stamp costs about the key's length plus ten bytes, and each
// writer's identity appears once.
package sessionstate
