package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/lkserver"
)

// tokenConfig holds the flags of the token command.
type tokenConfig struct {
	apiKey, apiSecret        string
	identity, room           string
	name, metadata           string
	attrs                    kvFlag
	join, admin              bool
	roomCreate, roomList     bool
	canPublish, canSubscribe bool
	canPublishData           bool
	canUpdateMetadata        bool
	hidden                   bool
	validFor                 time.Duration
}

func newTokenFlags(e *env) (*flag.FlagSet, *tokenConfig) {
	c := &tokenConfig{attrs: kvFlag{}}
	fs := newFlagSet(e, "token", "[flags]", `
Token mints an access token for a LiveKit server, signed with the server's
API key and secret, and prints it on standard output.

A token for joining a room needs -identity and -room; the roomJoin grant is
then given unless -join=false. The other grants are off unless given,
except -can-publish, -can-subscribe and -can-publish-data, which the server
treats as true when they are absent from the token.

Example:

	callstate token -identity alice -room standup -can-update-metadata -admin`)
	ep := lkserver.EndpointFromEnv(e.getenv)
	envFlag(fs, &c.apiKey, ep.APIKey, "api-key", "API `key` that issues the token", envAPIKey, envLiveKitAPIKey)
	envFlag(fs, &c.apiSecret, ep.APISecret, "api-secret", "API `secret` that signs the token", envAPISecret, envLiveKitAPISecret)
	fs.StringVar(&c.identity, "identity", "", "participant `identity`")
	fs.StringVar(&c.room, "room", "", "`room` the grants apply to")
	fs.StringVar(&c.name, "name", "", "participant's initial display `name`")
	fs.StringVar(&c.metadata, "metadata", "", "participant's initial `metadata` (JSON for user data)")
	fs.Var(c.attrs, "attr", "participant attribute `key=value` (repeatable)")
	fs.BoolVar(&c.join, "join", true, "grant roomJoin (given only with -identity and -room unless set)")
	fs.BoolVar(&c.admin, "admin", false, "grant roomAdmin: server API calls on the room, and session data writes")
	fs.BoolVar(&c.roomCreate, "room-create", false, "grant roomCreate: create and delete rooms")
	fs.BoolVar(&c.roomList, "room-list", false, "grant roomList: list rooms")
	fs.BoolVar(&c.canPublish, "can-publish", true, "grant canPublish (tracks); absent from the token unless set")
	fs.BoolVar(&c.canSubscribe, "can-subscribe", true, "grant canSubscribe (tracks); absent from the token unless set")
	fs.BoolVar(&c.canPublishData, "can-publish-data", true, "grant canPublishData (data and app messages); absent from the token unless set")
	fs.BoolVar(&c.canUpdateMetadata, "can-update-metadata", false, "grant canUpdateOwnMetadata (metadata, name, attributes, user data)")
	fs.BoolVar(&c.hidden, "hidden", false, "make the participant hidden from the others")
	fs.DurationVar(&c.validFor, "valid-for", callstate.DefaultTokenValidity, "how long the token is valid")
	return fs, c
}

func tokenFlags(e *env) *flag.FlagSet { fs, _ := newTokenFlags(e); return fs }

func runToken(_ context.Context, args []string, e *env) int {
	fs, c := newTokenFlags(e)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if c.apiKey == "" || c.apiSecret == "" {
		return usageError(fs, "-api-key and -api-secret (or $%s and $%s) are required", envLiveKitAPIKey, envLiveKitAPISecret)
	}
	claims := callstate.Claims{
		Identity: c.identity,
		Name:     c.name,
		Metadata: c.metadata,
		ValidFor: c.validFor,
		Grants: callstate.Grants{
			Room:                 c.room,
			RoomJoin:             c.join && c.identity != "" && c.room != "",
			RoomAdmin:            c.admin,
			RoomCreate:           c.roomCreate,
			RoomList:             c.roomList,
			CanUpdateOwnMetadata: c.canUpdateMetadata,
			Hidden:               c.hidden,
		},
	}
	if isSet(fs, "join") {
		claims.Grants.RoomJoin = c.join
	}
	if len(c.attrs) > 0 {
		claims.Attributes = c.attrs
	}
	if isSet(fs, "can-publish") {
		claims.Grants.CanPublish = callstate.Bool(c.canPublish)
	}
	if isSet(fs, "can-subscribe") {
		claims.Grants.CanSubscribe = callstate.Bool(c.canSubscribe)
	}
	if isSet(fs, "can-publish-data") {
		claims.Grants.CanPublishData = callstate.Bool(c.canPublishData)
	}
	tok, err := callstate.NewToken(c.apiKey, c.apiSecret, claims)
	if err != nil {
		fmt.Fprintf(e.stderr, "callstate token: %v\n", err)
		return exitUsage
	}
	fmt.Fprintln(e.stdout, tok)
	return exitOK
}
