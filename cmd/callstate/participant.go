package main

import (
	"context"
	"flag"
	"strings"
	"time"

	"github.com/callstate/callstate"
)

var participantVerbs = []subcommand{
	{"list", "<room>", "list the participants of a room", runParticipantList},
	{"get", "<room> <identity>", "show one participant", runParticipantGet},
	{"remove", "<room> <identity>", "disconnect a participant", runParticipantRemove},
	{"update", "<room> <identity>", "change a participant's metadata, name, attributes or permissions", runParticipantUpdate},
}

func participantFlags(e *env) *flag.FlagSet {
	return apiGroupFlags(e, "participant", "Participant lists, shows, removes and updates participants through the server API.", participantVerbs)
}

func runParticipant(ctx context.Context, args []string, e *env) int {
	return runVerbs(ctx, "participant", participantVerbs, args, e)
}

// printParticipants prints participants as JSON lines (the form of the join
// command's lines), or as a table.
func printParticipants(e *env, a *apiFlags, ps []callstate.Participant) {
	if !a.wantTable(e.stdout) {
		for _, p := range ps {
			writeJSON(e.stdout, p)
		}
		return
	}
	rows := make([][]string, 0, len(ps))
	for _, p := range ps {
		var attrs []string
		for k, v := range p.Attributes {
			attrs = append(attrs, k+"="+v)
		}
		joined := ""
		if !p.JoinedAt.IsZero() {
			joined = p.JoinedAt.Format(time.DateTime)
		}
		rows = append(rows, []string{p.Identity, p.SID, p.Name, p.Kind.String(), joined, truncate(p.Metadata, 30), truncate(strings.Join(attrs, ","), 30)})
	}
	table(e.stdout, []string{"IDENTITY", "SID", "NAME", "KIND", "JOINED", "METADATA", "ATTRIBUTES"}, rows)
}

func runParticipantList(ctx context.Context, args []string, e *env) int {
	var a apiFlags
	fs := verbFlags(e, "participant", "list", "[flags] <room>", "List prints the participants of a room, one JSON object a line (or a table).", &a)
	rs, pos, code, ok := a.parseVerb(fs, args, 1, 1)
	if !ok {
		return code
	}
	ps, err := rs.ListParticipants(ctx, pos[0])
	if err != nil {
		return fail(e, "participant list", err)
	}
	printParticipants(e, &a, ps)
	return exitOK
}

func runParticipantGet(ctx context.Context, args []string, e *env) int {
	var a apiFlags
	fs := verbFlags(e, "participant", "get", "[flags] <room> <identity>", "Get prints one participant. It fails (status 1) when there is no such participant.", &a)
	rs, pos, code, ok := a.parseVerb(fs, args, 2, 2)
	if !ok {
		return code
	}
	p, err := rs.GetParticipant(ctx, pos[0], pos[1])
	if err != nil {
		return fail(e, "participant get", err)
	}
	printParticipants(e, &a, []callstate.Participant{p})
	return exitOK
}

func runParticipantRemove(ctx context.Context, args []string, e *env) int {
	var a apiFlags
	fs := verbFlags(e, "participant", "remove", "[flags] <room> <identity>", "Remove disconnects a participant from its room. It prints nothing.", &a)
	rs, pos, code, ok := a.parseVerb(fs, args, 2, 2)
	if !ok {
		return code
	}
	if err := rs.RemoveParticipant(ctx, pos[0], pos[1]); err != nil {
		return fail(e, "participant remove", err)
	}
	return exitOK
}

func runParticipantUpdate(ctx context.Context, args []string, e *env) int {
	var a apiFlags
	var metadata, name string
	attrs := kvFlag{}
	var canPublish, canSubscribe, canPublishData, canUpdate, hidden bool
	fs := verbFlags(e, "participant", "update", "[flags] <room> <identity>", `
Update changes what the flags give of a participant and prints it as
updated. Attributes are merged (an attribute set to "" is deleted). The
permission flags change the participant's permissions; those not given keep
their current value.`, &a)
	fs.StringVar(&metadata, "metadata", "", "new `metadata` (JSON for user data)")
	fs.StringVar(&name, "name", "", "new display `name`")
	fs.Var(attrs, "attr", "attribute `key=value` (repeatable)")
	fs.BoolVar(&canPublish, "can-publish", false, "permission to publish tracks")
	fs.BoolVar(&canSubscribe, "can-subscribe", false, "permission to subscribe to tracks")
	fs.BoolVar(&canPublishData, "can-publish-data", false, "permission to send data and app messages")
	fs.BoolVar(&canUpdate, "can-update-metadata", false, "permission to change its own metadata, name and attributes")
	fs.BoolVar(&hidden, "hidden", false, "hide the participant from the others")
	rs, pos, code, ok := a.parseVerb(fs, args, 2, 2)
	if !ok {
		return code
	}
	room, identity := pos[0], pos[1]
	var u callstate.ParticipantUpdate
	if isSet(fs, "metadata") {
		u.Metadata = &metadata
	}
	if isSet(fs, "name") {
		u.Name = &name
	}
	if len(attrs) > 0 {
		u.Attributes = attrs
	}
	perms := map[string]*bool{"can-publish": &canPublish, "can-subscribe": &canSubscribe, "can-publish-data": &canPublishData, "can-update-metadata": &canUpdate, "hidden": &hidden}
	anyPerm := false
	for flagName := range perms {
		anyPerm = anyPerm || isSet(fs, flagName)
	}
	if anyPerm {
		// LiveKit replaces all permissions at once: start from the
		// current ones so that the flags not given keep their value.
		cur, err := rs.GetParticipant(ctx, room, identity)
		if err != nil {
			return fail(e, "participant update", err)
		}
		p := cur.Permissions
		for flagName, v := range perms {
			if !isSet(fs, flagName) {
				continue
			}
			switch flagName {
			case "can-publish":
				p.CanPublish = *v
			case "can-subscribe":
				p.CanSubscribe = *v
			case "can-publish-data":
				p.CanPublishData = *v
			case "can-update-metadata":
				p.CanUpdateMetadata = *v
			case "hidden":
				p.Hidden = *v
			}
		}
		u.Permissions = &p
	}
	if u.Metadata == nil && u.Name == nil && u.Attributes == nil && u.Permissions == nil {
		return usageError(fs, "nothing to update: give -metadata, -name, -attr or a permission flag")
	}
	p, err := rs.UpdateParticipant(ctx, room, identity, u)
	if err != nil {
		return fail(e, "participant update", err)
	}
	printParticipants(e, &a, []callstate.Participant{p})
	return exitOK
}
