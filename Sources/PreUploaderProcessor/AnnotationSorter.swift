import DocumentEngine
import ExchangerEvents

/// Sorts a source document's annotations into what the pre-uploader brands into the destination
/// PDF and what it carries as a layer, by the task's routing.
///
/// | kind | how it is recognised | routing |
/// |---|---|---|
/// | redactions | `pspdfkit/markup/redaction` | `redactionsAs` (branded in first) |
/// | highlights | `pspdfkit/markup/highlight` | `highlightsAs` |
/// | notes | `pspdfkit/note` | `notesAs` |
/// | stickers | `pspdfkit/image` (with its image attachment) | `stickersAs` |
/// | bates | `pspdfkit/text` with `customData.stampType` `bates_stamp` | `batesAs` |
/// | confidentiality codes | `pspdfkit/text` with `customData.stampType` `confidentiality_stamp` | `confidentialityCodesAs` |
/// | comments | any annotation with `isCommentThreadRoot: true` | always layer (its thread goes to storage) |
///
/// Anything else (ink, shapes, free text) is carried as a layer: nothing is lost.
public struct AnnotationSorter: Sendable {
    /// The kinds, with ``DocumentTask/AnnotationKind`` for the routed ones.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case redaction, highlight, note, sticker, bates, confidentiality, comment, other

        var routed: DocumentTask.AnnotationKind? {
            switch self {
            case .redaction: .redactions
            case .highlight: .highlights
            case .note: .notes
            case .sticker: .stickers
            case .bates: .bates
            case .confidentiality: .confidentialityCodes
            case .comment, .other: nil
            }
        }
    }

    /// The result: the two Instant JSON sets and per-kind counts.
    public struct Sorted: Sendable, Hashable {
        /// To flatten into the destination PDF; redactions first.
        public var brandIn: InstantJSON
        /// To carry as the layer (comment roots included).
        public var layer: InstantJSON
        /// The ids of the comment-thread roots.
        public var commentRoots: Set<String>
        /// How many of each kind went each way.
        public var brandedIn: [String: Int]
        public var layered: [String: Int]
    }

    /// The kind of one annotation.
    public static func kind(of annotation: InstantJSONAnnotation) -> Kind {
        let object = (try? annotation.object()) as? [String: Any]
        if (object?["isCommentThreadRoot"] as? Bool) == true { return .comment }
        switch annotation.type {
        case "pspdfkit/markup/redaction": return .redaction
        case "pspdfkit/markup/highlight": return .highlight
        case "pspdfkit/note": return .note
        case "pspdfkit/image": return .sticker
        case "pspdfkit/text":
            switch (object?["customData"] as? [String: Any])?["stampType"] as? String {
            case "bates_stamp": return .bates
            case "confidentiality_stamp": return .confidentiality
            default: return .other
            }
        default: return .other
        }
    }

    /// Sorts `annotations` by `task`'s routing; stickers take their attachments with them.
    public static func sort(_ annotations: InstantJSON, task: DocumentTask) throws(DocumentEngineError) -> Sorted {
        var redactions: [InstantJSONAnnotation] = []
        var brandIn: [InstantJSONAnnotation] = []
        var layer: [InstantJSONAnnotation] = []
        var roots = Set<String>()
        var brandedIn: [String: Int] = [:]
        var layered: [String: Int] = [:]
        for annotation in annotations.annotations {
            let kind = kind(of: annotation)
            if kind == .comment, let id = annotation.id { roots.insert(id) }
            if let routed = kind.routed, task.brandsIn(routed) {
                if kind == .redaction { redactions.append(annotation) } else { brandIn.append(annotation) }
                brandedIn[kind.rawValue, default: 0] += 1
            } else {
                layer.append(annotation)
                layered[kind.rawValue, default: 0] += 1
            }
        }
        let brandInAll = redactions + brandIn
        return Sorted(
            brandIn: try InstantJSON(annotations: brandInAll, attachments: attachments(of: brandInAll, in: annotations)),
            layer: try InstantJSON(annotations: layer, attachments: attachments(of: layer, in: annotations)),
            commentRoots: roots, brandedIn: brandedIn, layered: layered)
    }

    /// The attachments `annotations` refer to (`imageAttachmentId`).
    static func attachments(of annotations: [InstantJSONAnnotation], in all: InstantJSON) -> [InstantJSONAttachment] {
        let wanted = Set(annotations.compactMap { annotation in
            ((try? annotation.object()) as? [String: Any])?["imageAttachmentId"] as? String
        })
        return all.attachments.filter { wanted.contains($0.id) }
    }
}
