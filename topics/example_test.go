package topics_test

import (
	"fmt"

	"github.com/lfnet/lfnet/topics"
)

func ExampleFromString() {
	room := topics.FromString("lfnet demo room")
	again, err := topics.Parse(room.String())
	fmt.Println(err == nil && again == room)
	// Output: true
}

func ExampleDerive() {
	room := topics.Random()
	// Each subsystem puts only its own derived value on the wire, never the topic.
	overlay := topics.Derive(room, "membership")
	gossip := topics.Derive(room, "gossip")
	fmt.Println(overlay != gossip)
	// Output: true
}
