package discovery

import (
	"fmt"

	"github.com/zeebo/blake3"

	"github.com/lfnet/lfnet/topics"
)

const (
	saltSize  = 32
	tokenSize = 32

	roleInitiator byte = 0
	roleAcceptor  byte = 1

	purpose = "discovery"
)

// Token is a topic's salted stand-in for one session and one role.
type Token [tokenSize]byte

// topicToken computes the token of topic t in a session with the given salts, for role.
func topicToken(t topics.Topic, saltI, saltA []byte, role byte) Token {
	key := topics.Derive(t, purpose)
	h, err := blake3.NewKeyed(key[:])
	if err != nil {
		panic(fmt.Sprintf("discovery: blake3 keyed hash: %v", err)) // key is always 32 bytes
	}
	_, _ = h.Write(saltI)
	_, _ = h.Write(saltA)
	_, _ = h.Write([]byte{role})
	var tok Token
	h.Sum(tok[:0])
	return tok
}

// tokensFor maps each topic to its token for role.
func tokensFor(ts []topics.Topic, saltI, saltA []byte, role byte) map[Token]topics.Topic {
	out := make(map[Token]topics.Topic, len(ts))
	for _, t := range ts {
		out[topicToken(t, saltI, saltA, role)] = t
	}
	return out
}

// intersect returns the topics among mine whose token for the remote's role is in theirs.
func intersect(mine []topics.Topic, theirs []Token, saltI, saltA []byte, remoteRole byte) []topics.Topic {
	offered := make(map[Token]struct{}, len(theirs))
	for _, tok := range theirs {
		offered[tok] = struct{}{}
	}
	var common []topics.Topic
	for _, t := range mine {
		if _, ok := offered[topicToken(t, saltI, saltA, remoteRole)]; ok {
			common = append(common, t)
		}
	}
	return common
}
