package vm

// SetHypervisor replaces the service's hypervisor, for tests that take it away or wrap it.
func SetHypervisor(s *Service, hv Hypervisor) { s.d.Hypervisor = hv }
