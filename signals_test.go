package callstate_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// What the real server reports as room signals for data-only participants:
// they are not publishers without callstate's presence track, and are with
// it; the room is not recorded, and the counts come with the join.
func TestRoomSignalsFromServer(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	sub := a.Subscribe(nil)
	b := srv.Join(t, room, "bob", &callstate.JoinOptions{NoPresenceTrack: true})
	j := calltest.Await(t, sub, func(e callstate.ParticipantJoined) bool { return e.Participant.Identity == "bob" })
	assert.False(t, j.Participant.IsPublisher)
	_ = srv.Join(t, room, "carol", nil)
	j = calltest.Await(t, sub, func(e callstate.ParticipantJoined) bool { return e.Participant.Identity == "carol" })
	assert.True(t, j.Participant.IsPublisher, "the presence track makes a publisher")
	assert.Equal(t, callstate.KindStandard, j.Participant.Kind)
	info := b.Info()
	assert.False(t, info.Recording)
	assert.Empty(t, b.ActiveSpeakers())
	// A room update (here from a metadata change) carries the counts.
	_, err := srv.RoomService().UpdateRoomMetadata(t.Context(), room, "x")
	assert.NoError(t, err)
	calltest.Await(t, sub, func(e callstate.RoomMetadataChanged) bool { return e.Metadata == "x" })
	t.Logf("room info after an update: %+v", a.Info())
	assert.Equal(t, 3, a.Info().NumParticipants)
}
