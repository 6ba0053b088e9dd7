package nodeapi_test

import (
	"log"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
)

// *ratemesh.Node is what the service API is built on.
var _ nodeapi.Node = (*ratemesh.Node)(nil)

// The node's HTTP service API next to the application's routes.
func ExampleRegisterService() {
	node, err := ratemesh.New(ratemesh.LocalConfig())
	if err != nil {
		log.Fatal(err)
	}
	e := echo.New()
	err = nodeapi.RegisterService(e, node, nodeapi.ServiceConfig{
		AdminToken: "from-a-secret-store", // enables DELETE /v1/keys/:key
		Registry:   node.Registry(),       // serves /metrics
	})
	if err != nil {
		log.Fatal(err)
	}
}
