package callstate_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

func appFrom(id string) func(callstate.AppMessage) bool {
	return func(e callstate.AppMessage) bool { return e.From == id }
}

func TestAppMessages(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	checkLeaks(t)
	a := srv.Join(t, room, "alice", nil)
	b := srv.Join(t, room, "bob", nil)
	c := srv.Join(t, room, "carol", nil)
	subA, subB, subC := a.Subscribe(nil), b.Subscribe(nil), c.Subscribe(nil)
	ctx := ctxT(t)
	for _, id := range []string{"bob", "carol"} {
		if _, ok := a.Participant(id); !ok {
			calltest.Await(t, subA, func(e callstate.ParticipantJoined) bool { return e.Participant.Identity == id })
		}
	}

	type chat struct {
		Text string `json:"text"`
		N    int    `json:"n"`
	}
	// Broadcast: everyone else receives it with the sender's identity.
	require.NoError(t, a.SendAppMessage(ctx, chat{"hi all", 1}))
	for _, sub := range []*callstate.Subscription{subB, subC} {
		e := calltest.Await(t, sub, appFrom("alice"))
		var got chat
		require.NoError(t, json.Unmarshal(e.Data, &got))
		assert.Equal(t, chat{"hi all", 1}, got)
	}
	// "*" is everyone too.
	require.NoError(t, a.SendAppMessage(ctx, chat{"star", 2}, "*"))
	e := calltest.Await(t, subC, appFrom("alice"))
	assert.JSONEq(t, `{"text":"star","n":2}`, string(e.Data))

	// Addressed: only bob; carol's next message from alice is the marker.
	require.NoError(t, a.SendAppMessage(ctx, chat{"psst", 3}, "bob"))
	require.NoError(t, a.SendAppMessage(ctx, chat{"marker", 4}))
	calltest.Await(t, subB, func(e callstate.AppMessage) bool {
		return e.From == "alice" && strings.Contains(string(e.Data), "star")
	})
	e = calltest.Await(t, subB, appFrom("alice"))
	assert.JSONEq(t, `{"text":"psst","n":3}`, string(e.Data))
	e = calltest.Await(t, subC, appFrom("alice"))
	assert.JSONEq(t, `{"text":"marker","n":4}`, string(e.Data))

	// Bob answers; the sender never receives its own message: alice's next
	// app message is bob's.
	require.NoError(t, b.SendAppMessage(ctx, json.RawMessage(`{"reply":true}`)))
	e = calltest.Await(t, subA, func(callstate.AppMessage) bool { return true })
	assert.Equal(t, "bob", e.From)
	assert.JSONEq(t, `{"reply":true}`, string(e.Data))

	// Large messages travel as a text stream and arrive whole.
	big := map[string]string{"blob": strings.Repeat("x", 200<<10)}
	require.NoError(t, a.SendAppMessage(ctx, big, "carol"))
	e = calltest.Await(t, subC, appFrom("alice"))
	var gotBig map[string]string
	require.NoError(t, json.Unmarshal(e.Data, &gotBig))
	assert.Equal(t, big, gotBig)

	// Refusals.
	assert.ErrorIs(t, a.SendAppMessage(ctx, json.RawMessage(`{"bad"`)), callstate.ErrInvalidJSON)
	assert.ErrorIs(t, a.SendAppMessage(ctx, []byte(`not json`)), callstate.ErrInvalidJSON)
	assert.ErrorIs(t, a.SendAppMessage(ctx, func() {}), callstate.ErrInvalidJSON)
	assert.ErrorIs(t, a.SendAppMessage(ctx, 1, "nobody"), callstate.ErrUnknownParticipant)
}

// A LiveKit app (here the server API) that publishes JSON on the app
// message topic is understood as sending an app message; other server
// data arrives as data with an empty sender.
func TestAppMessageWireFormAndServerData(t *testing.T) {
	t.Parallel()
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	a := srv.Join(t, room, "alice", nil)
	sub := a.Subscribe(nil)
	ctx := ctxT(t)
	svc := service(t, srv)

	assert.ErrorIs(t, svc.SendData(ctx, room, []byte("{}"), &callstate.PublishOptions{Topic: callstate.AppMessageTopic}), callstate.ErrInvalidArgument)
	// LiveKit drops server data for a participant whose data channel it
	// has not registered yet, a moment after its Join returned: the
	// server's message is sent again until one arrives.
	var e callstate.AppMessage
	for attempt := 0; ; attempt++ {
		require.NoError(t, svc.SendAppMessage(ctx, room, json.RawMessage(`{"from":"server"}`)))
		var err error
		e, err = calltest.AwaitEvent(ctx, sub, 2*time.Second, func(callstate.AppMessage) bool { return true })
		if err == nil {
			break
		}
		require.Less(t, attempt, 5, "no server app message arrived: %v", err)
	}
	assert.Empty(t, e.From)
	assert.True(t, e.FromServer)
	assert.JSONEq(t, `{"from":"server"}`, string(e.Data))

	require.NoError(t, svc.SendData(ctx, room, []byte("raw bytes"), &callstate.PublishOptions{Topic: "news"}))
	d := calltest.Await(t, sub, func(callstate.DataReceived) bool { return true })
	assert.Empty(t, d.Data.From)
	assert.Equal(t, "news", d.Data.Topic)
	assert.Equal(t, "raw bytes", string(d.Data.Payload))
}
