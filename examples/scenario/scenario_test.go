package scenario_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// TestMain stops the server that calltest.Shared starts, once every test
// has run.
func TestMain(m *testing.M) { calltest.Main(m) }

// TestStandupScenario scripts a small meeting the way an application's
// integration test would: a host opens the meeting in the session data, a
// guest signals that she is ready in her user data, a latecomer finds the
// whole state on joining, the host talks to him privately, and a moderator
// removes the guest with the server API. Every assertion is on an event a
// participant observed, awaited with a deadline.
func TestStandupScenario(t *testing.T) {
	srv := calltest.Shared(t) // one LiveKit server for the whole test binary
	room := srv.RoomName(t)   // a room of this test's own
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Join closes the Rooms when the test ends.
	host := srv.Join(t, room, "host", nil)
	hostEvents := host.Subscribe(nil)
	guest := srv.Join(t, room, "guest", &callstate.JoinOptions{UserData: map[string]any{"ready": false}})
	guestEvents := guest.Subscribe(nil)

	// The host sees the guest join; participant updates from the server
	// can take a few seconds, which Await allows for.
	joined := calltest.Await(t, hostEvents, func(e callstate.ParticipantJoined) bool {
		return e.Participant.Identity == "guest"
	})
	var ud struct {
		Ready bool `json:"ready"`
	}
	require.NoError(t, joined.Participant.DecodeUserData(&ud))
	assert.False(t, ud.Ready)

	// The host opens the meeting in the session data; the guest sees it.
	require.NoError(t, host.SetSessionData(ctx, map[string]any{"stage": "lobby", "agenda": []string{"news", "demo"}}, callstate.Replace))
	sd := calltest.Await(t, guestEvents, func(e callstate.SessionDataUpdated) bool { return e.Data["stage"] != nil })
	assert.JSONEq(t, `"lobby"`, string(sd.Data["stage"]))

	// The guest is ready; the host sees her user data change, then starts.
	require.NoError(t, guest.SetUserData(ctx, map[string]any{"ready": true}))
	upd := calltest.Await(t, hostEvents, func(e callstate.ParticipantUpdated) bool {
		return e.Participant.Identity == "guest" && e.Changes.UserData
	})
	require.NoError(t, upd.Participant.DecodeUserData(&ud))
	assert.True(t, ud.Ready)
	require.NoError(t, host.SetSessionData(ctx, map[string]any{"stage": "live"}, callstate.ShallowMerge))
	sd = calltest.Await(t, guestEvents, func(e callstate.SessionDataUpdated) bool {
		return string(e.Data["stage"]) == `"live"`
	})
	assert.Equal(t, []string{"stage"}, sd.Changed)
	assert.JSONEq(t, `["news","demo"]`, string(sd.Data["agenda"]), "a merge keeps the other keys")

	// A latecomer has the whole state when Join returns: the others' user
	// data and the session data.
	late := srv.Join(t, room, "latecomer", nil)
	lateEvents := late.Subscribe(nil)
	g, ok := late.Participant("guest")
	require.True(t, ok, "the latecomer knows the guest")
	data, ok := g.UserData()
	require.True(t, ok)
	assert.JSONEq(t, `{"ready":true}`, string(data))
	assert.JSONEq(t, `"live"`, string(late.SessionData()["stage"]))

	// The host welcomes the latecomer privately, once the host knows him: the
	// guest must not get the message. An app message to everyone sent
	// after it marks the point by which the guest would have had it.
	calltest.Await(t, hostEvents, func(e callstate.ParticipantJoined) bool { return e.Participant.Identity == "latecomer" })
	require.NoError(t, host.SendAppMessage(ctx, map[string]string{"text": "welcome, we are live"}, "latecomer"))
	require.NoError(t, host.SendAppMessage(ctx, map[string]string{"text": "next: demo"}))
	msg := calltest.Await[callstate.AppMessage](t, lateEvents, nil)
	assert.Equal(t, "host", msg.From)
	assert.JSONEq(t, `{"text":"welcome, we are live"}`, string(msg.Data))
	msg = calltest.Await[callstate.AppMessage](t, guestEvents, nil)
	assert.JSONEq(t, `{"text":"next: demo"}`, string(msg.Data), "the guest's first app message is the one to everyone")

	// A moderator removes the guest with the server API. Her Room ends
	// with the reason; the others see her leave.
	require.NoError(t, srv.RoomService().RemoveParticipant(ctx, room, "guest"))
	disc := calltest.Await[callstate.Disconnected](t, guestEvents, nil)
	assert.Equal(t, callstate.ReasonParticipantRemoved, disc.Reason)
	assert.ErrorIs(t, guest.SendAppMessage(ctx, json.RawMessage(`{}`)), callstate.ErrClosed)
	left := calltest.Await(t, lateEvents, func(e callstate.ParticipantLeft) bool { return e.Participant.Identity == "guest" })
	assert.Equal(t, callstate.ReasonParticipantRemoved, left.Reason)
	calltest.Await(t, hostEvents, func(e callstate.ParticipantLeft) bool { return e.Participant.Identity == "guest" })
	_, ok = host.Participant("guest")
	assert.False(t, ok, "the host's state no longer has the guest")
}
