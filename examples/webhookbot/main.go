// Webhookbot is a server-side bot driven by LiveKit's webhooks: when a
// participant joins a room, LiveKit posts a participant_joined webhook; the
// bot verifies it and greets the newcomer by setting a "greeting" attribute
// on it through the server API. The bot never joins the room. The greeting
// is state, not a message: the newcomer reads it whenever it looks, so
// nothing is lost if it arrives before the newcomer listens.
//
// Run it with
//
//	go run ./examples/webhookbot
//
// It starts a local LiveKit server configured to post its webhooks to the
// bot (package calltest; the first run installs livekit-server, which takes
// a few minutes), has "alice" join, waits for her to receive the greeting,
// and stops. It exits 0 when the greeting arrived.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// greetingKey is the attribute the bot sets.
const greetingKey = "greeting"

// bot returns the webhook handler: it greets every participant who joins.
func bot(rs *callstate.RoomService, recv *callstate.WebhookReceiver) http.Handler {
	return recv.Handler(func(ev callstate.WebhookEvent) {
		log.Printf("webhook %s %s", ev.Type, ev.ID)
		if ev.Type != callstate.WebhookParticipantJoined || ev.Room == nil || ev.Participant == nil {
			return
		}
		room, who := ev.Room.Name, ev.Participant.Identity
		// LiveKit waits for the answer to its post: greet after answering.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			u := callstate.ParticipantUpdate{Attributes: map[string]string{greetingKey: "welcome, " + who}}
			if _, err := rs.UpdateParticipant(ctx, room, who, u); err != nil {
				log.Printf("greeting %s: %v", who, err)
			}
		}()
	})
}

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The server needs the bot's URL, and the bot the server's keys: fix
	// the keys, listen, then start the server.
	key, secret := "APIwebhookbot", "webhookbot-example-secret-0123456789"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv, err := calltest.Start(ctx, &calltest.Options{
		IgnoreEnv: true, APIKey: key, APISecret: secret,
		WebhookURLs: []string{"http://" + ln.Addr().String() + "/livekit"},
	})
	if err != nil {
		return err
	}
	defer srv.Close()

	recv, err := callstate.NewWebhookReceiver(key, secret)
	if err != nil {
		return err
	}
	rs, err := callstate.NewRoomService(srv.URL(), key, secret, nil)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: bot(rs, recv), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()

	// Alice joins and waits for her greeting.
	tok := srv.Token("lobby", "alice")
	alice, err := callstate.Join(ctx, srv.URL(), tok, nil)
	if err != nil {
		return err
	}
	defer alice.Close()
	state, sub := alice.SubscribeWithSnapshot(nil)
	defer sub.Close()
	if g := state.Local.Attributes[greetingKey]; g != "" {
		fmt.Printf("alice received: %s\n", g)
		return nil
	}
	for {
		select {
		case ev := <-sub.Events():
			u, ok := ev.(callstate.ParticipantUpdated)
			if !ok || u.Participant.Identity != "alice" {
				continue
			}
			if g := u.Participant.Attributes[greetingKey]; g != "" {
				fmt.Printf("alice received: %s\n", g)
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("no greeting: %w", ctx.Err())
		}
	}
}
