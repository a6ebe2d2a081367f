package libvirt

import (
	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/openvair/openvair/driver"
)

// domainState maps libvirt's domain state and its reason (virDomainGetState) to the driver's.
func domainState(st golibvirt.DomainState, reason int32) driver.DomainState {
	return driver.DomainState{Power: powerState(st), Reason: stateReason(st, reason)}
}

// stateReason names the reason libvirt gives for a state; each state has its own reason enumeration.
func stateReason(st golibvirt.DomainState, reason int32) driver.PowerReason {
	var names []driver.PowerReason
	switch st {
	case golibvirt.DomainShutoff:
		// unknown, shutdown, destroyed, crashed, migrated, saved, failed, from snapshot, daemon
		names = []driver.PowerReason{driver.ReasonUnknown, driver.ReasonShutdown, driver.ReasonDestroyed, driver.ReasonCrashed,
			driver.ReasonMigrated, driver.ReasonSaved, driver.ReasonFailed, driver.ReasonFromSnapshot, driver.ReasonDaemon}
	case golibvirt.DomainRunning:
		// unknown, booted, migrated, restored, from snapshot, unpaused, migration canceled, save canceled, wakeup, crashed
		names = []driver.PowerReason{driver.ReasonUnknown, driver.ReasonBooted, driver.ReasonMigrated, driver.ReasonRestored,
			driver.ReasonFromSnapshot, driver.ReasonUnpaused, driver.ReasonMigrated, driver.ReasonSaved, driver.ReasonWakeup,
			driver.ReasonCrashed}
	case golibvirt.DomainPaused:
		// unknown, user, migration, save, dump, I/O error, watchdog, from snapshot, shutting down, ...
		names = []driver.PowerReason{driver.ReasonUnknown, driver.ReasonUser, driver.ReasonMigrated, driver.ReasonSaved,
			driver.ReasonSaved, driver.ReasonIOError, driver.ReasonWatchdog, driver.ReasonFromSnapshot, driver.ReasonShutdown}
	case golibvirt.DomainShutdown:
		names = []driver.PowerReason{driver.ReasonUnknown, driver.ReasonUser}
	case golibvirt.DomainCrashed:
		names = []driver.PowerReason{driver.ReasonUnknown, driver.ReasonPanicked}
	}
	if reason >= 0 && int(reason) < len(names) {
		return names[reason]
	}
	return driver.ReasonUnknown
}

// eventState maps a lifecycle event and its detail to the power state it leads to and why; ok is false
// for events that do not change the power state.
func eventState(event golibvirt.DomainEventType, detail int32) (driver.DomainState, bool) {
	pick := func(names ...driver.PowerReason) driver.PowerReason {
		if detail >= 0 && int(detail) < len(names) {
			return names[detail]
		}
		return driver.ReasonUnknown
	}
	switch event {
	case golibvirt.DomainEventDefined:
		if golibvirt.DomainEventDefinedDetailType(detail) != golibvirt.DomainEventDefinedAdded {
			return driver.DomainState{}, false // a redefinition does not change the power state
		}
		return driver.DomainState{Power: driver.PowerShutOff, Reason: driver.ReasonUnknown}, true
	case golibvirt.DomainEventUndefined:
		return driver.DomainState{Power: driver.PowerMissing}, true
	case golibvirt.DomainEventStarted:
		// booted, migrated, restored, from snapshot, wakeup
		return driver.DomainState{Power: driver.PowerRunning, Reason: pick(driver.ReasonBooted, driver.ReasonMigrated,
			driver.ReasonRestored, driver.ReasonFromSnapshot, driver.ReasonWakeup)}, true
	case golibvirt.DomainEventResumed:
		// unpaused, migrated, from snapshot, postcopy
		return driver.DomainState{Power: driver.PowerRunning, Reason: pick(driver.ReasonUnpaused, driver.ReasonMigrated,
			driver.ReasonFromSnapshot, driver.ReasonMigrated)}, true
	case golibvirt.DomainEventSuspended, golibvirt.DomainEventPmsuspended:
		// paused, migrated, I/O error, watchdog, restored, from snapshot, API error, postcopy, postcopy failed
		return driver.DomainState{Power: driver.PowerPaused, Reason: pick(driver.ReasonUser, driver.ReasonMigrated,
			driver.ReasonIOError, driver.ReasonWatchdog, driver.ReasonRestored, driver.ReasonFromSnapshot)}, true
	case golibvirt.DomainEventStopped:
		// shutdown, destroyed, crashed, migrated, saved, failed, from snapshot
		ds := driver.DomainState{Power: driver.PowerShutOff, Reason: pick(driver.ReasonShutdown, driver.ReasonDestroyed,
			driver.ReasonCrashed, driver.ReasonMigrated, driver.ReasonSaved, driver.ReasonFailed, driver.ReasonFromSnapshot)}
		return ds, true
	case golibvirt.DomainEventShutdown:
		// The guest finished shutting down; a Stopped event follows.
		return driver.DomainState{Power: driver.PowerStopping, Reason: driver.ReasonShutdown}, true
	case golibvirt.DomainEventCrashed:
		return driver.DomainState{Power: driver.PowerCrashed, Reason: driver.ReasonPanicked}, true
	}
	return driver.DomainState{}, false
}
