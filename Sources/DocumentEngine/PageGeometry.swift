import Foundation

/// A rectangle by its edges; `minY` is the top in top-down frames and the bottom in PDF user space.
public struct PageRect: Sendable, Hashable, CustomStringConvertible {
    public var minX: Double
    public var minY: Double
    public var maxX: Double
    public var maxY: Double

    public init(minX: Double, minY: Double, maxX: Double, maxY: Double) {
        self.minX = Swift.min(minX, maxX)
        self.minY = Swift.min(minY, maxY)
        self.maxX = Swift.max(minX, maxX)
        self.maxY = Swift.max(minY, maxY)
    }

    public var width: Double { maxX - minX }
    public var height: Double { maxY - minY }

    /// Whether the two share an area (touching edges do not count).
    public func overlaps(_ other: PageRect) -> Bool {
        minX < other.maxX && other.minX < maxX && minY < other.maxY && other.minY < maxY
    }

    /// Whether `other` lies inside this rectangle, give or take `tolerance` points.
    public func contains(_ other: PageRect, tolerance: Double = 0) -> Bool {
        other.minX >= minX - tolerance && other.maxX <= maxX + tolerance && other.minY >= minY - tolerance && other.maxY <= maxY + tolerance
    }

    public var description: String {
        String(format: "[%.2f %.2f %.2f %.2f]", minX, minY, maxX, maxY)
    }
}

/// The geometry of one PDF page and the three frames the redaction path works in:
///
/// - **PDF user space**: the page's own coordinates (origin bottom-left, y up), in which its
///   `/MediaBox` is given and its content is drawn.
/// - **Annotation space**: Instant JSON `bbox` and `rects`, `[left, top, width, height]` in points
///   from the top-left corner of the media box of the page *as stored* (before `/Rotate`), y down.
///   This is the PDF annotation `/Rect` with its y axis flipped; the local engine reads every
///   annotation this way.
/// - **Display space**: the page as a viewer shows it (its `/Rotate` applied, clockwise), origin
///   top-left, y down, in points: the frame poppler's `pdftotext -bbox` reports words in and
///   `pdftoppm` renders.
///
/// All conversions are exact affine maps; `rotation` is normalised to 0, 90, 180 or 270.
public struct PageGeometry: Sendable, Hashable {
    /// The page's media box in user space.
    public var mediaBox: PageRect
    /// The page's `/Rotate`, clockwise, normalised to 0, 90, 180 or 270.
    public var rotation: Int

    public init(mediaBox: PageRect, rotation: Int) {
        self.mediaBox = mediaBox
        self.rotation = ((rotation % 360) + 360) % 360 / 90 * 90
    }

    /// The displayed page's width and height in points.
    public var displaySize: (width: Double, height: Double) {
        rotation % 180 == 0 ? (mediaBox.width, mediaBox.height) : (mediaBox.height, mediaBox.width)
    }

    /// The user-space rectangle of an annotation-space `[left, top, width, height]`.
    public func userRect(annotationBox box: [Double]) -> PageRect {
        let left = mediaBox.minX + box[0]
        let top = mediaBox.maxY - box[1]
        return PageRect(minX: left, minY: top - box[3], maxX: left + box[2], maxY: top)
    }

    /// A user-space point in display space.
    public func displayPoint(x: Double, y: Double) -> (u: Double, v: Double) {
        let (x0, y0, x1, y1) = (mediaBox.minX, mediaBox.minY, mediaBox.maxX, mediaBox.maxY)
        switch rotation {
        case 90: return (y - y0, x - x0)
        case 180: return (x1 - x, y - y0)
        case 270: return (y1 - y, x1 - x)
        default: return (x - x0, y1 - y)
        }
    }

    /// A display-space point in user space (the inverse of ``displayPoint(x:y:)``).
    public func userPoint(u: Double, v: Double) -> (x: Double, y: Double) {
        let (x0, y0, x1, y1) = (mediaBox.minX, mediaBox.minY, mediaBox.maxX, mediaBox.maxY)
        switch rotation {
        case 90: return (x0 + v, y0 + u)
        case 180: return (x1 - u, y0 + v)
        case 270: return (x1 - v, y1 - u)
        default: return (x0 + u, y1 - v)
        }
    }

    /// A user-space rectangle in display space.
    public func displayRect(_ rect: PageRect) -> PageRect {
        let a = displayPoint(x: rect.minX, y: rect.minY)
        let b = displayPoint(x: rect.maxX, y: rect.maxY)
        return PageRect(minX: a.u, minY: a.v, maxX: b.u, maxY: b.v)
    }

    /// A display-space rectangle in user space.
    public func userRect(display rect: PageRect) -> PageRect {
        let a = userPoint(u: rect.minX, v: rect.minY)
        let b = userPoint(u: rect.maxX, v: rect.maxY)
        return PageRect(minX: a.x, minY: a.y, maxX: b.x, maxY: b.y)
    }

    /// The matrix `[a b c d e f]` that maps an image's unit square onto the whole page so that it
    /// shows upright in display space (the image's first row at the displayed top): the `cm` for a
    /// raster of the displayed page.
    public var displayImageMatrix: [Double] {
        let (x0, y0, x1, y1) = (mediaBox.minX, mediaBox.minY, mediaBox.maxX, mediaBox.maxY)
        let (w, h) = (mediaBox.width, mediaBox.height)
        switch rotation {
        case 90: return [0, h, -w, 0, x1, y0]
        case 180: return [-w, 0, 0, -h, x1, y1]
        case 270: return [0, -h, w, 0, x0, y1]
        default: return [w, 0, 0, h, x0, y0]
        }
    }
}
