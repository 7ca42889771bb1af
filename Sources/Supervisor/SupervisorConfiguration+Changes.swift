/// What a reload (SIGHUP) must do to go from the running configuration to a new one.
///
/// Every program of the new configuration that differs from the old one (ignoring only its line
/// number) is in exactly one of ``added``, ``restart`` or ``rescale``; for programs in ``restart``
/// and ``rescale`` the supervisor adopts the new ``ProgramConfiguration``.
public struct ConfigurationChanges: Sendable, Equatable {
    /// Programs only in the new configuration: start them (global) or make them available to deployments.
    public var added: [String]
    /// Programs only in the old configuration: stop all their processes.
    public var removed: [String]
    /// Programs whose processes must be restarted: command, environment, directory, scope,
    /// start/stop/restart settings (autorestart, exitcodes, startsecs, startretries, stopsignal,
    /// stopwaitsecs, backoff, crash loop) or log files changed.
    public var restart: [String]
    /// Programs whose processes keep running: only instance counts (numprocs, min/max_procs,
    /// messages_per_proc, queue, autostart) or priority changed. Start or stop the difference
    /// (possibly none).
    public var rescale: [String]
    /// Whether the `[supervisor]` section changed (the file path and its directory are not compared).
    public var supervisorSettingsChanged: Bool

    /// Creates a change set.
    public init(added: [String] = [], removed: [String] = [], restart: [String] = [], rescale: [String] = [], supervisorSettingsChanged: Bool = false) {
        self.added = added
        self.removed = removed
        self.restart = restart
        self.rescale = rescale
        self.supervisorSettingsChanged = supervisorSettingsChanged
    }

    /// True when nothing changed.
    public var isEmpty: Bool {
        added.isEmpty && removed.isEmpty && restart.isEmpty && rescale.isEmpty && !supervisorSettingsChanged
    }
}

extension SupervisorConfiguration {
    /// What changed from `old` (the running configuration) to this one. Lists follow file order:
    /// ``ConfigurationChanges/removed`` that of `old`, the others that of this configuration.
    public func changes(from old: SupervisorConfiguration) -> ConfigurationChanges {
        var changes = ConfigurationChanges(supervisorSettingsChanged: supervisor != old.supervisor)
        let newNames = Set(programs.map(\.name))
        changes.removed = old.programs.map(\.name).filter { !newNames.contains($0) }
        for program in programs {
            guard let previous = old.program(named: program.name) else {
                changes.added.append(program.name)
                continue
            }
            if program.needsRestart(comparedTo: previous) {
                changes.restart.append(program.name)
            } else if program.needsRescale(comparedTo: previous) {
                changes.rescale.append(program.name)
            }
        }
        return changes
    }
}

extension ProgramConfiguration {
    /// Whether a change from `old` can only take effect in new processes.
    func needsRestart(comparedTo old: ProgramConfiguration) -> Bool {
        command != old.command || environment != old.environment || directory != old.directory || scope != old.scope
            || here != old.here
            || autorestart != old.autorestart || exitCodes != old.exitCodes || startSeconds != old.startSeconds
            || startRetries != old.startRetries || stopSignal != old.stopSignal || stopWait != old.stopWait
            || stdoutLog != old.stdoutLog || stderrLog != old.stderrLog
            || backoffInitial != old.backoffInitial || backoffMax != old.backoffMax
            || crashLoopDeaths != old.crashLoopDeaths || crashLoopWindow != old.crashLoopWindow
    }

    /// Whether anything else (counts, scaling, priority) changed; the line number is ignored.
    func needsRescale(comparedTo old: ProgramConfiguration) -> Bool {
        var old = old
        old.line = line
        old.file = file
        return self != old
    }
}
