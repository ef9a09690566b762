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
	assert.GreaterOrEqual(t, info.NumParticipants, 1)
	assert.Empty(t, b.ActiveSpeakers())
}
