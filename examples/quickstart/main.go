// Quickstart shows callstate's primitives with two participants, alice and
// bob: user data, session data, an app message, a data packet, and the
// events through which bob observes them.
//
// Run it with
//
//	go run ./examples/quickstart
//
// It starts a local LiveKit server (package calltest; the first run installs
// livekit-server, which takes a few minutes) and stops it at the end. To use
// an existing server, give -url, -api-key and -api-secret, or set
// CALLSTATE_URL, CALLSTATE_API_KEY and CALLSTATE_API_SECRET.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

func quickstart(ctx context.Context, serverURL, apiKey, apiSecret string) error {
	room := fmt.Sprintf("quickstart-%d", time.Now().UnixNano())
	join := func(identity string, opts *callstate.JoinOptions) (*callstate.Room, error) {
		token, err := callstate.NewToken(apiKey, apiSecret, callstate.Claims{
			Identity: identity,
			Grants:   calltest.DefaultGrants(room), // join, send data, update own metadata, room admin
		})
		if err != nil {
			return nil, err
		}
		return callstate.Join(ctx, serverURL, token, opts)
	}
	alice, err := join("alice", &callstate.JoinOptions{UserData: map[string]string{"color": "teal"}})
	if err != nil {
		return err
	}
	defer alice.Close()
	bob, err := join("bob", nil)
	if err != nil {
		return err
	}
	defer bob.Close()
	events := bob.Subscribe(nil)

	// The state is there as soon as Join returns.
	p, _ := bob.Participant("alice")
	ud, _ := p.UserData()
	fmt.Printf("bob joined and sees alice with user data %s\n", ud)

	// Alice changes the shared state and sends messages, in this order...
	if err := errors.Join(
		alice.SetSessionData(ctx, map[string]any{"topic": "quickstart"}, callstate.Replace),
		alice.SendAppMessage(ctx, map[string]string{"text": "hello bob"}),
		alice.PublishData(ctx, []byte("ping"), &callstate.PublishOptions{Topic: "chat"}),
		alice.SetUserData(ctx, map[string]string{"color": "green"}),
	); err != nil {
		return err
	}

	// ...and bob observes each change as an event.
	for seen := 0; seen < 4; {
		select {
		case ev, ok := <-events.Events():
			if !ok {
				return errors.New("bob's room ended")
			}
			switch e := ev.(type) {
			case callstate.SessionDataUpdated:
				fmt.Printf("bob: session data topic = %s\n", e.Data["topic"])
				seen++
			case callstate.AppMessage:
				fmt.Printf("bob: app message from %s: %s\n", e.From, e.Data)
				seen++
			case callstate.DataReceived:
				fmt.Printf("bob: data from %s on topic %q: %s\n", e.Data.From, e.Data.Topic, e.Data.Payload)
				seen++
			case callstate.ParticipantUpdated:
				var ud struct{ Color string }
				if e.Participant.DecodeUserData(&ud) == nil && ud.Color == "green" {
					fmt.Printf("bob: %s's user data is now %s\n", e.Participant.Identity, e.Participant.Metadata)
					seen++
				}
			}
		case <-ctx.Done():
			return fmt.Errorf("bob observed %d of 4 changes: %w", seen, ctx.Err())
		}
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	serverURL := flag.String("url", os.Getenv("CALLSTATE_URL"), "LiveKit server URL (default: start a local server)")
	apiKey := flag.String("api-key", os.Getenv("CALLSTATE_API_KEY"), "API key of the server")
	apiSecret := flag.String("api-secret", os.Getenv("CALLSTATE_API_SECRET"), "API secret of the server")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *serverURL == "" {
		srv, err := calltest.Start(ctx, &calltest.Options{IgnoreEnv: true})
		if err != nil {
			return err
		}
		defer srv.Close()
		*serverURL, *apiKey, *apiSecret = srv.URL(), srv.APIKey(), srv.APISecret()
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return quickstart(ctx, *serverURL, *apiKey, *apiSecret)
}
