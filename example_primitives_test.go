package callstate_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"strings"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// examplePair starts a local LiveKit server and joins alice and bob, who
// see each other.
func examplePair(name string) (alice, bob *callstate.Room, done func()) {
	srv, err := calltest.Start(context.Background(), nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	room := fmt.Sprintf("example-%s-%d", name, time.Now().UnixNano())
	alice, err = callstate.Join(ctx, srv.URL(), srv.Token(room, "alice"), nil)
	if err != nil {
		log.Fatal(err)
	}
	bob, err = callstate.Join(ctx, srv.URL(), srv.Token(room, "bob"), nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := alice.WaitForParticipant(ctx, "bob"); err != nil {
		log.Fatal(err)
	}
	if _, err := bob.WaitForParticipant(ctx, "alice"); err != nil {
		log.Fatal(err)
	}
	return alice, bob, func() { alice.Close(); bob.Close(); srv.Close() }
}

// Bob answers RPC calls of "greet"; alice calls it, then calls a method
// that fails with an application error.
func ExampleRoom_PerformRpc() {
	alice, bob, done := examplePair("rpc")
	defer done()
	ctx := context.Background()

	bob.RegisterRpcMethod("greet", func(ctx context.Context, inv callstate.RpcInvocation) (string, error) {
		if inv.Payload == "" {
			return "", callstate.NewRpcError(2001, "no name", "payload was empty")
		}
		return "hello " + inv.Payload + ", from " + inv.CallerIdentity + "'s peer", nil
	})

	out, err := alice.PerformRpc(ctx, "bob", "greet", "alice", &callstate.RpcOptions{ResponseTimeout: 5 * time.Second})
	fmt.Println(out, err)

	_, err = alice.PerformRpc(ctx, "bob", "greet", "", nil)
	var re *callstate.RpcError
	if errors.As(err, &re) {
		fmt.Println(re.Code, re.Message, re.Data)
	}
	_, err = alice.PerformRpc(ctx, "bob", "missing", "", nil)
	errors.As(err, &re)
	fmt.Println(re.Code == callstate.RpcUnsupportedMethod)
	// Output:
	// hello alice, from alice's peer <nil>
	// 2001 no name payload was empty
	// true
}

// Alice streams text produced over time; bob's handler reads it as it
// arrives, through an io.Reader.
func ExampleRoom_StreamText() {
	alice, bob, done := examplePair("streams")
	defer done()
	ctx := context.Background()

	got := make(chan string)
	bob.RegisterTextStreamHandler("notes", func(r *callstate.TextStreamReader) {
		var b strings.Builder
		io.Copy(&b, r) // or r.ReadAll()
		got <- fmt.Sprintf("%s from %s: %q", r.Info().Topic, r.From(), b.String())
	})

	w, err := alice.StreamText(ctx, &callstate.StreamOptions{Topic: "notes", Attributes: map[string]string{"lang": "en"}})
	if err != nil {
		log.Fatal(err)
	}
	for _, word := range []string{"one ", "two ", "three"} {
		w.WriteString(word)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)
	// Output:
	// notes from alice: "one two three"
}

// Alice sends bytes as a named stream; bob's handler reads them with the
// stream's header.
func ExampleRoom_SendBytes() {
	alice, bob, done := examplePair("bytes")
	defer done()

	got := make(chan string)
	bob.RegisterByteStreamHandler("files", func(r *callstate.ByteStreamReader) {
		data, _ := io.ReadAll(r)
		info := r.Info()
		got <- fmt.Sprintf("%s (%s, %d bytes): %s", info.Name, info.MimeType, info.Size, data)
	})
	_, err := alice.SendBytes(context.Background(), []byte(`{"ok":true}`),
		&callstate.StreamOptions{Topic: "files", Name: "status.json", MimeType: "application/json"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)
	// Output:
	// status.json (application/json, 11 bytes): {"ok":true}
}

// Alice writes in the room's LiveKit chat; bob receives ChatMessage events.
func ExampleRoom_SendChatMessage() {
	alice, bob, done := examplePair("chat")
	defer done()
	sub := bob.Subscribe(nil)
	defer sub.Close()

	if _, err := alice.SendChatMessage(context.Background(), "hi everyone", nil); err != nil {
		log.Fatal(err)
	}
	for e := range sub.Events() {
		if m, ok := e.(callstate.ChatMessage); ok {
			fmt.Printf("%s: %s\n", m.From, m.Text)
			break
		}
	}
	// Output:
	// alice: hi everyone
}
