package calltest_test

import (
	"context"
	"fmt"
	"log"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/calltest"
)

// Start a server outside of a test, create a room through its server API
// and read it back.
func Example() {
	ctx := context.Background()
	srv, err := calltest.Start(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	rs := srv.RoomService()
	name := "example-" + srv.APIKey() // unique, should the server be shared
	if _, err := rs.CreateRoom(ctx, callstate.CreateRoomOptions{Name: name, Metadata: `{"topic":"standup"}`}); err != nil {
		log.Fatal(err)
	}
	defer rs.DeleteRoom(ctx, name)

	rooms, err := rs.ListRooms(ctx, name)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(rooms), rooms[0].Metadata)
	// Output: 1 {"topic":"standup"}
}
