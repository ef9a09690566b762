package callstate_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// What the real server reports as room signals for data-only participants:
// they are not publishers, the room is not recorded, and the counts come
// with the join.
func TestRoomSignalsFromServer(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	sub := a.Subscribe(nil)
	b := srv.Join(t, room, "bob", nil)
	j := calltest.Await(t, sub, func(e callstate.ParticipantJoined) bool { return e.Participant.Identity == "bob" })
	assert.False(t, j.Participant.IsPublisher)
	assert.Equal(t, callstate.KindStandard, j.Participant.Kind)
	info := b.Info()
	assert.False(t, info.Recording)
	assert.Empty(t, b.ActiveSpeakers())
	// A room update (here from a metadata change) carries the counts.
	_, err := srv.RoomService().UpdateRoomMetadata(t.Context(), room, "x")
	assert.NoError(t, err)
	calltest.Await(t, sub, func(e callstate.RoomMetadataChanged) bool { return e.Metadata == "x" })
	t.Logf("room info after an update: %+v", a.Info())
	assert.Equal(t, 2, a.Info().NumParticipants)
}
