package logsync_test

import (
	"context"
	"crypto/ed25519"
	"fmt"

	"github.com/lfnet/lfnet/syncproto/logsync"
	"github.com/lfnet/lfnet/topics"
)

// An author appends two operations to a log; a receiver verifies the second from its wire
// bytes.
func ExampleNewOperation() {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	first, err := logsync.NewOperation(priv, nil, []byte("hello"), nil, 1_700_000_000_000_000)
	if err != nil {
		panic(err)
	}
	second, err := logsync.NewOperation(priv, first, []byte("world"), nil, 1_700_000_000_000_001)
	if err != nil {
		panic(err)
	}

	received, err := logsync.DecodeOperation(second.HeaderBytes(), second.Body)
	if err != nil {
		panic(err)
	}
	fmt.Println("seq", received.Header.SeqNum, "body", string(received.Body))
	fmt.Println("backlink is first:", *received.Header.Backlink == first.Hash())
	fmt.Println("id:", received.Hash())

	tampered := append([]byte(nil), second.Body...)
	tampered[0] = 'W'
	_, err = logsync.DecodeOperation(second.HeaderBytes(), tampered)
	fmt.Println(err)
	// Output:
	// seq 1 body world
	// backlink is first: true
	// id: 5d10c73980277f59a17549c130ed6f59b580e0c22502a9b3071ce4900c5217f0
	// logsync: body does not match header: body hash differs from payload hash
}

// A store keeps logs per (author, log id); a topic resolves to the logs that hold its data,
// and heights tell a peer what it lacks.
func ExampleMemStore() {
	ctx := context.Background()
	store := logsync.NewMemStore()
	defer store.Close()

	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	author := logsync.PublicKeyOf(priv)
	topic := topics.FromString("example")
	const logID = 1

	var prev *logsync.Operation
	for i, text := range []string{"a", "b", "c"} {
		op, err := logsync.NewOperation(priv, prev, []byte(text), nil, uint64(i))
		if err != nil {
			panic(err)
		}
		if _, err := store.Insert(ctx, op, logID); err != nil {
			panic(err)
		}
		prev = op
	}
	if err := store.Associate(ctx, topic, author, logID); err != nil {
		panic(err)
	}

	logs, _ := store.Resolve(ctx, topic)
	log := logsync.LogRef{Author: author, LogID: logs[author][0]}
	heights, _ := store.Heights(ctx, []logsync.LogRef{log})
	fmt.Println("height:", heights[log])

	// A peer at height 1 lacks heights (1, 3]: seq nums 1 and 2.
	_ = store.Range(ctx, log, 1, heights[log], func(op *logsync.Operation) error {
		fmt.Println(op.Header.SeqNum, string(op.Body))
		return nil
	})
	// Output:
	// height: 3
	// 1 b
	// 2 c
}
