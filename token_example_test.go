package callstate_test

import (
	"fmt"
	"log"
	"time"

	"github.com/callstate/callstate"
)

// Mint a token that lets a bot join a room, update its own metadata and
// receive data without sending any, then read it back.
func ExampleNewToken() {
	const key, secret = "APIexample", "an-example-secret-of-32-characters"
	token, err := callstate.NewToken(key, secret, callstate.Claims{
		Identity: "recorder",
		Name:     "Recorder",
		ValidFor: time.Hour,
		Grants: callstate.Grants{
			Room:                 "standup",
			RoomJoin:             true,
			CanUpdateOwnMetadata: true,
			CanPublish:           callstate.Bool(false),
			CanPublishData:       callstate.Bool(false),
		},
	})
	if err != nil {
		log.Fatal(err)
	}

	c, err := callstate.ParseToken(token, secret)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.Identity, c.Grants.Room, c.ValidFor, *c.Grants.CanPublishData, c.Grants.CanSubscribe == nil)
	// Output: recorder standup 1h0m0s false true
}
