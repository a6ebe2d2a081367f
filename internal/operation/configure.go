package operation

// Configure applies opts to s, a service under construction, and then, when they gave it an operation
// service (ops reports it), calls register so that the service's kinds can run on workers. The services
// (storage, volume, image, vm) build themselves with it from their NewService options.
func Configure[S any](s *S, opts []func(*S), ops func() *Service, register func()) *S {
	for _, o := range opts {
		o(s)
	}
	if ops() != nil {
		register()
	}
	return s
}
