// Package lkpb holds callstate's protobuf subset of the LiveKit protocol and
// the Go code generated from it.
//
// The field numbers and types in livekit.proto are LiveKit's; run
// `go generate ./...` to regenerate livekit.pb.go after editing it (protoc
// must be on PATH; protoc-gen-go is pinned as a tool in go.mod).
package lkpb

//go:generate sh gen.sh
