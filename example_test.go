package callstate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// Join a room as alice, with user data, and as bob, who finds alice and her
// user data in the room's state as soon as Join returns.
func ExampleJoin() {
	srv, err := calltest.Start(context.Background(), nil) // a local LiveKit server
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	room := fmt.Sprintf("example-join-%d", time.Now().UnixNano())

	alice, err := callstate.Join(ctx, srv.URL(), srv.Token(room, "alice"),
		&callstate.JoinOptions{UserData: map[string]string{"role": "host"}})
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := callstate.Join(ctx, srv.URL(), srv.Token(room, "bob"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	fmt.Println(bob.LocalParticipant().Identity, bob.ConnectionState())
	for _, p := range bob.RemoteParticipants() {
		ud, _ := p.UserData()
		fmt.Println(p.Identity, string(ud))
	}
	// Output:
	// bob connected
	// alice {"role":"host"}
}

// Replace the session data, then merge a change into it: a key set to null
// is deleted, the others are kept. Everyone in the room sees each change as
// a SessionDataUpdated event.
func ExampleRoom_SetSessionData() {
	srv, err := calltest.Start(context.Background(), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	room := fmt.Sprintf("example-session-%d", time.Now().UnixNano())
	alice, err := callstate.Join(ctx, srv.URL(), srv.Token(room, "alice"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := callstate.Join(ctx, srv.URL(), srv.Token(room, "bob"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()
	events := bob.Subscribe(nil)

	// Session data writes need the roomAdmin grant, which srv.Token gives.
	err = alice.SetSessionData(ctx, map[string]any{"topic": "standup", "timer": 300}, callstate.Replace)
	if err != nil {
		log.Fatal(err)
	}
	// Bob sees alice's session data, then merges his change into it.
	ev, err := calltest.AwaitEvent[callstate.SessionDataUpdated](ctx, events, 10*time.Second, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ev.Changed, string(ev.Data["topic"]))
	err = bob.SetSessionData(ctx, map[string]any{"timer": nil, "notes": "ship it"}, callstate.ShallowMerge)
	if err != nil {
		log.Fatal(err)
	}
	ev, err = calltest.AwaitEvent[callstate.SessionDataUpdated](ctx, events, 10*time.Second, nil)
	if err != nil {
		log.Fatal(err)
	}
	b, _ := json.Marshal(ev.Data)
	fmt.Println(ev.Changed, string(b))
	// Output:
	// [timer topic] "standup"
	// [notes timer] {"notes":"ship it","topic":"standup"}
}

// Send an app message to one participant. Messages may be addressed only to
// participants the sender knows of, so alice first waits until she sees bob
// join.
func ExampleRoom_SendAppMessage() {
	srv, err := calltest.Start(context.Background(), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	room := fmt.Sprintf("example-appmessage-%d", time.Now().UnixNano())
	alice, err := callstate.Join(ctx, srv.URL(), srv.Token(room, "alice"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	aliceEvents := alice.Subscribe(nil)
	bob, err := callstate.Join(ctx, srv.URL(), srv.Token(room, "bob"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()
	bobEvents := bob.Subscribe(nil)

	if _, err := calltest.AwaitEvent(ctx, aliceEvents, 10*time.Second, func(e callstate.ParticipantJoined) bool {
		return e.Participant.Identity == "bob"
	}); err != nil {
		log.Fatal(err)
	}
	type chat struct {
		Text string `json:"text"`
	}
	if err := alice.SendAppMessage(ctx, chat{Text: "hi bob"}, "bob"); err != nil {
		log.Fatal(err)
	}

	msg, err := calltest.AwaitEvent[callstate.AppMessage](ctx, bobEvents, 10*time.Second, nil)
	if err != nil {
		log.Fatal(err)
	}
	var c chat
	if err := json.Unmarshal(msg.Data, &c); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s from %s\n", c.Text, msg.From)
	// Output: hi bob from alice
}

// Publish a reliable data packet on a topic; the others receive it as a
// DataReceived event.
func ExampleRoom_PublishData() {
	srv, err := calltest.Start(context.Background(), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	room := fmt.Sprintf("example-data-%d", time.Now().UnixNano())
	alice, err := callstate.Join(ctx, srv.URL(), srv.Token(room, "alice"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := callstate.Join(ctx, srv.URL(), srv.Token(room, "bob"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()
	events := bob.Subscribe(nil)

	if err := alice.PublishData(ctx, []byte("hello"), &callstate.PublishOptions{Topic: "chat"}); err != nil {
		log.Fatal(err)
	}

	ev, err := calltest.AwaitEvent[callstate.DataReceived](ctx, events, 10*time.Second, nil)
	if err != nil {
		log.Fatal(err)
	}
	d := ev.Data
	fmt.Printf("%s sent %q on topic %q (%s)\n", d.From, d.Payload, d.Topic, d.Kind)
	// Output: alice sent "hello" on topic "chat" (reliable)
}

// Handle a room's events in a loop with a type switch. Here each event
// prompts bob's next action, so that the story is always told in the same
// order: he joins, sets his user data, sends an app message and leaves.
func ExampleRoom_Subscribe() {
	srv, err := calltest.Start(context.Background(), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	room := fmt.Sprintf("example-subscribe-%d", time.Now().UnixNano())
	alice, err := callstate.Join(ctx, srv.URL(), srv.Token(room, "alice"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	sub := alice.Subscribe(nil)
	bob, err := callstate.Join(ctx, srv.URL(), srv.Token(room, "bob"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	for {
		var ev callstate.Event
		select {
		case ev = <-sub.Events():
		case <-ctx.Done():
			log.Fatal(ctx.Err())
		}
		switch e := ev.(type) {
		case callstate.ParticipantJoined:
			fmt.Println(e.Participant.Identity, "joined")
			err = bob.SetUserData(ctx, map[string]bool{"ready": true})
		case callstate.ParticipantUpdated:
			if e.Changes.UserData {
				ud, _ := e.Participant.UserData()
				fmt.Println(e.Participant.Identity, "set user data", string(ud))
				err = bob.SendAppMessage(ctx, map[string]string{"text": "bye"})
			}
		case callstate.AppMessage:
			fmt.Println(e.From, "sent", string(e.Data))
			err = bob.Close()
		case callstate.ParticipantLeft:
			fmt.Println(e.Participant.Identity, "left:", e.Reason)
			return
		case callstate.Disconnected:
			log.Fatal("alice's room ended: ", e.Err)
		}
		if err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// bob joined
	// bob set user data {"ready":true}
	// bob sent {"text":"bye"}
	// bob left: CLIENT_INITIATED
}
