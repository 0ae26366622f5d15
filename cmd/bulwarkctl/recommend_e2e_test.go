package main

import (
	"testing"

	"github.com/bulwarkmesh/bulwark/controlplane/prom/promtest"
)

func testRecommendations(t *testing.T, s *server, inv *gameBackend, m *promtest.GRPCMetrics) {
	t.Skip("recommendations: next")
}
