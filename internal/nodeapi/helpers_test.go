package nodeapi_test

import (
	"testing"

	"github.com/ratemesh/ratemesh/internal/clustertest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, clustertest.LeakOptions()...)
}
