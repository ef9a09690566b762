package scratchtmp

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

func TestPollLike(t *testing.T) {
	srv := calltest.Shared(t)
	room := srv.RoomName(t)
	bot := srv.Join(t, room, "pollbot")
	botSub := bot.Subscribe()
	ids := []string{"alice", "bob", "carol"}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			r, err := callstate.Join(ctx, srv.URL(), srv.Token(room, id), callstate.WithLoopbackICE())
			if err != nil {
				t.Error(err)
				return
			}
			defer r.Close()
			sub := r.Subscribe()
			if _, ok := r.SessionData()["poll"]; !ok {
				_, err := calltest.AwaitEvent(ctx, sub, time.Minute, func(e callstate.SessionDataUpdated) bool { return e.Data["poll"] != nil })
				if err != nil {
					fmt.Printf("%v %s: no poll: %v\n", time.Since(start), id, err)
					return
				}
			}
			fmt.Printf("%v %s: votes, knows %d participants\n", time.Since(start), id, len(r.RemoteParticipants()))
			returned := make(chan struct{})
			go func() {
				select {
				case <-returned:
				case <-time.After(5 * time.Second):
					fmt.Printf("DUMP %s stuck\n", id)
					pprof.Lookup("goroutine").WriteTo(os.Stdout, 1)
				}
			}()
			err = r.SetSessionData(ctx, map[string]string{"vote:" + id: "x"}, callstate.ShallowMerge)
			close(returned)
			fmt.Printf("%v %s: SetSessionData returned: %v\n", time.Since(start), id, err)
			b, _ := json.Marshal(r.SessionData())
			fmt.Printf("%v %s sees %s\n", time.Since(start), id, b)
			b, _ = json.Marshal(r.SessionData())
			fmt.Printf("END %s sees %s raw %s\n", id, b, r.Metadata())
		})
	}
	for len(bot.RemoteParticipants()) < 3 {
		calltest.Await[callstate.ParticipantJoined](t, botSub, nil)
	}
	if err := bot.SetSessionData(ctx, map[string]any{"poll": "q"}, callstate.Replace); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%v poll opened\n", time.Since(start))
	_, err := calltest.AwaitEvent(ctx, botSub, 10*time.Second, func(e callstate.SessionDataUpdated) bool {
		b, _ := json.Marshal(e.Data)
		fmt.Printf("%v bot event %s\n", time.Since(start), b)
		return len(e.Data) == 4
	})
	fmt.Println("bot:", err, bot.Metadata())
	wg.Wait()
}
