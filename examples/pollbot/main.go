// Pollbot runs a poll on session data, the way Daily apps do: a bot opens
// the poll by replacing the session data with the question and its options;
// each participant votes by shallow-merging a key of its own,
// "vote:<identity>", so that concurrent votes never overwrite each other;
// the bot tallies the votes from SessionDataUpdated events and, once
// everyone has voted, announces the result with an app message.
//
// Run it with
//
//	go run ./examples/pollbot
//
// It starts a local LiveKit server (package calltest; the first run installs
// livekit-server, which takes a few minutes) and stops it at the end. To use
// an existing server, give -url, -api-key and -api-secret, or set
// CALLSTATE_URL, CALLSTATE_API_KEY and CALLSTATE_API_SECRET.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// Poll is the session data key "poll".
type Poll struct {
	Question string   `json:"question"`
	Options  []string `json:"options"`
}

// Results is the app message that announces the outcome.
type Results struct {
	Type   string         `json:"type"` // "poll_results"
	Tally  map[string]int `json:"tally"`
	Winner string         `json:"winner"`
}

const votePrefix = "vote:"

// voters and their choices.
var voters = map[string]string{"alice": "sushi", "bob": "pizza", "carol": "sushi"}

func pollbot(ctx context.Context, join func(identity string) (*callstate.Room, error)) error {
	bot, err := join("pollbot")
	if err != nil {
		return err
	}
	defer bot.Close()
	events := bot.Subscribe(nil)

	// The participants join and vote as soon as they see the poll. The
	// first failure stops everyone.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	for identity, choice := range voters {
		wg.Go(func() {
			if err := vote(ctx, join, identity, choice); err != nil {
				cancel(err)
			}
		})
	}
	fail := func(err error) error {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return cause
		}
		return err
	}

	// Open the poll when everyone is in.
	for len(bot.RemoteParticipants()) < len(voters) {
		if _, err := calltest.AwaitEvent[callstate.ParticipantJoined](ctx, events, time.Minute, nil); err != nil {
			return fail(err)
		}
	}
	poll := Poll{Question: "Lunch?", Options: []string{"pizza", "sushi", "tacos"}}
	if err := bot.SetSessionData(ctx, map[string]any{"poll": poll}, callstate.Replace); err != nil {
		return fail(err)
	}
	fmt.Printf("pollbot: opened the poll %q %v\n", poll.Question, poll.Options)

	// Tally from the session data until every participant has voted.
	for {
		ev, err := calltest.AwaitEvent[callstate.SessionDataUpdated](ctx, events, time.Minute, nil)
		if err != nil {
			return fail(err)
		}
		tally, votes := map[string]int{}, 0
		for key, value := range ev.Data {
			var choice string
			if strings.HasPrefix(key, votePrefix) && json.Unmarshal(value, &choice) == nil && slices.Contains(poll.Options, choice) {
				tally[choice]++
				votes++
			}
		}
		fmt.Printf("pollbot: %d of %d voted\n", votes, len(voters))
		if votes < len(voters) {
			continue
		}
		res := Results{Type: "poll_results", Tally: tally}
		for _, o := range poll.Options { // ties go to the first option
			if tally[o] > tally[res.Winner] {
				res.Winner = o
			}
		}
		if err := bot.SendAppMessage(ctx, res); err != nil {
			return fail(err)
		}
		fmt.Printf("pollbot: announced %s with %v\n", res.Winner, res.Tally)
		break
	}
	// Every voter must see the results.
	wg.Wait()
	return context.Cause(ctx)
}

// vote joins, waits for the poll, votes, and waits for the results.
func vote(ctx context.Context, join func(string) (*callstate.Room, error), identity, choice string) error {
	room, err := join(identity)
	if err != nil {
		return err
	}
	defer room.Close()
	events := room.Subscribe(nil)
	if _, ok := room.SessionData()["poll"]; !ok {
		_, err := calltest.AwaitEvent(ctx, events, time.Minute, func(e callstate.SessionDataUpdated) bool {
			_, ok := e.Data["poll"]
			return ok
		})
		if err != nil {
			return fmt.Errorf("%s: waiting for the poll: %w", identity, err)
		}
	}
	if err := room.SetSessionData(ctx, map[string]string{votePrefix + identity: choice}, callstate.ShallowMerge); err != nil {
		return fmt.Errorf("%s: voting: %w", identity, err)
	}
	fmt.Printf("%s: voted %s\n", identity, choice)
	msg, err := calltest.AwaitEvent(ctx, events, time.Minute, func(e callstate.AppMessage) bool { return e.From == "pollbot" })
	if err != nil {
		return fmt.Errorf("%s: waiting for the results: %w", identity, err)
	}
	var res Results
	if err := json.Unmarshal(msg.Data, &res); err != nil || res.Type != "poll_results" {
		return fmt.Errorf("%s: unexpected message %s", identity, msg.Data)
	}
	fmt.Printf("%s: the winner is %s\n", identity, res.Winner)
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
	timeout := flag.Duration("timeout", 30*time.Second, "bound on the whole poll")
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
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	room := fmt.Sprintf("pollbot-%d", time.Now().UnixNano())
	join := func(identity string) (*callstate.Room, error) {
		// Session data writes need the roomAdmin grant, which
		// DefaultGrants includes.
		token, err := callstate.NewToken(*apiKey, *apiSecret, callstate.Claims{Identity: identity, Grants: calltest.DefaultGrants(room)})
		if err != nil {
			return nil, err
		}
		r, err := callstate.Join(ctx, *serverURL, token, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", identity, err)
		}
		return r, nil
	}
	err := pollbot(ctx, join)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("the poll did not finish within %v: %w", *timeout, err)
	}
	return err
}
