package envoycfg

// The subset of Envoy's bootstrap that Parse reads; yaml ignores the rest.

type file struct {
	StaticResources struct {
		Listeners []listener `yaml:"listeners"`
		Clusters  []cluster  `yaml:"clusters"`
	} `yaml:"static_resources"`
}

type listener struct {
	FilterChains []struct {
		Filters []struct {
			TypedConfig struct {
				RouteConfig struct {
					VirtualHosts []struct {
						Routes []struct {
							Route struct {
								RateLimits []struct {
									Actions []action `yaml:"actions"`
								} `yaml:"rate_limits"`
							} `yaml:"route"`
						} `yaml:"routes"`
					} `yaml:"virtual_hosts"`
				} `yaml:"route_config"`
				HTTPFilters []struct {
					Name        string          `yaml:"name"`
					TypedConfig ratelimitFilter `yaml:"typed_config"`
				} `yaml:"http_filters"`
			} `yaml:"typed_config"`
		} `yaml:"filters"`
	} `yaml:"filter_chains"`
}

type action struct {
	RemoteAddress  *struct{} `yaml:"remote_address"`
	RequestHeaders *struct {
		HeaderName    string `yaml:"header_name"`
		DescriptorKey string `yaml:"descriptor_key"`
	} `yaml:"request_headers"`
	GenericKey *struct {
		DescriptorKey   string `yaml:"descriptor_key"`
		DescriptorValue string `yaml:"descriptor_value"`
	} `yaml:"generic_key"`
}

type ratelimitFilter struct {
	Domain           string `yaml:"domain"`
	FailureModeDeny  bool   `yaml:"failure_mode_deny"`
	RateLimitService struct {
		GRPCService struct {
			EnvoyGRPC struct {
				ClusterName string `yaml:"cluster_name"`
			} `yaml:"envoy_grpc"`
			InitialMetadata []struct {
				Key   string `yaml:"key"`
				Value string `yaml:"value"`
			} `yaml:"initial_metadata"`
		} `yaml:"grpc_service"`
	} `yaml:"rate_limit_service"`
}

type cluster struct {
	Name           string `yaml:"name"`
	LoadAssignment struct {
		Endpoints []struct {
			LBEndpoints []struct {
				Endpoint struct {
					Address struct {
						SocketAddress struct {
							Address   string `yaml:"address"`
							PortValue int    `yaml:"port_value"`
						} `yaml:"socket_address"`
					} `yaml:"address"`
				} `yaml:"endpoint"`
			} `yaml:"lb_endpoints"`
		} `yaml:"endpoints"`
	} `yaml:"load_assignment"`
}
