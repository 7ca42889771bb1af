import CaseData
import Foundation
import Logging
import Orchestrator

/// What the orchestrator's process needs besides the broker.
public struct OrchestratorDependencies: Sendable {
    /// The case-data copy step.
    public var copier: any CaseDataCopying

    /// A value with the given fields.
    public init(copier: any CaseDataCopying) {
        self.copier = copier
    }
}

extension OrchestratorDependencies {
    /// The production dependencies: ``CaseDataCopier`` over the case databases of
    /// `EXCHANGER_CASE_DATABASE_URL` (a template with `{database}`) and
    /// `EXCHANGER_CASE_DATABASE_PREFIX`, with the copy settings of `EXCHANGER_CASE_COPY_*`.
    /// - Throws: ``OrchestratorServiceError/Code/noCopyEngine`` naming what is missing or malformed.
    public static func makeDefault(environment: [String: String], logger: Logger) throws(OrchestratorServiceError) -> OrchestratorDependencies {
        do {
            let databases = try CaseDatabases(urlTemplate: nil, prefix: nil, environment: environment)
            let settings = try CaseCopySettings(environment: environment)
            let engine = CaseDataCopier(databases: databases, settings: settings, logger: logger)
            return OrchestratorDependencies(copier: CaseDataCopyStep(engine: engine))
        } catch {
            throw OrchestratorServiceError(.noCopyEngine, "no case-data copy engine configured: \(error)")
        }
    }
}
