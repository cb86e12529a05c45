package lfnet_test

import (
	"log"
	"os"
)

func tempDir() (string, func()) {
	dir, err := os.MkdirTemp("", "lfnet-example")
	if err != nil {
		log.Fatal(err)
	}
	return dir, func() { _ = os.RemoveAll(dir) }
}
