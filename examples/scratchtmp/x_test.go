package scratchtmp

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

func TestMain(m *testing.M) { calltest.Main(m) }

func TestConcurrentMerges(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	bot := srv.Join(t, room, "bot")
	ids := []string{"alice", "bob", "carol"}
	var rooms []*callstate.Room
	var subs []*callstate.Subscription
	for _, id := range ids {
		r := srv.Join(t, room, id)
		rooms = append(rooms, r)
		subs = append(subs, r.Subscribe())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bot.SetSessionData(ctx, map[string]any{"poll": "q"}, callstate.Replace); err != nil {
		t.Fatal(err)
	}
	for i := range rooms {
		calltest.Await(t, subs[i], func(e callstate.SessionDataUpdated) bool { return e.Data["poll"] != nil })
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, r := range rooms {
		wg.Go(func() {
			err := r.SetSessionData(ctx, map[string]string{"vote:" + ids[i]: "x"}, callstate.ShallowMerge)
			fmt.Printf("%s: SetSessionData returned after %v: %v\n", ids[i], time.Since(start), err)
		})
	}
	wg.Wait()
	for i, r := range rooms {
		b, _ := json.Marshal(r.SessionData())
		fmt.Printf("%s sees %s\n", ids[i], b)
	}
	b, _ := json.Marshal(bot.SessionData())
	fmt.Printf("bot sees %s; raw %s\n", b, bot.Metadata())
	botSub := bot.Subscribe()
	_, err := calltest.AwaitEvent(context.Background(), botSub, 5*time.Second, func(e callstate.SessionDataUpdated) bool {
		b, _ := json.Marshal(e.Data)
		fmt.Printf("%v bot event %s\n", time.Since(start), b)
		return len(e.Data) == 4
	})
	b, _ = json.Marshal(bot.SessionData())
	fmt.Printf("after waiting: %v; bot sees %s\n", err, b)
}
