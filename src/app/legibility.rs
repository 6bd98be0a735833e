//! What makes a frame's text unreadable as drawn, found from the shapes egui painted: two rows of
//! text over each other (a column running into the next), a row cut at the left or right edge
//! of the area it is clipped to (a column too narrow for a dose), and characters the fonts have
//! no glyph for (drawn as empty boxes). `lablens screenshots` reports them for every panel it
//! renders, and the GUI tests assert there are none at the default window size and at 1024×768.
//! Rows scrolled out of view, or cut only at the top or bottom of a scrolled area, are not
//! problems.

use egui::epaint::{ClippedShape, Shape, TextShape};
use egui::{FontId, Rect};

/// Rows that share less than this many points (in each direction) do not overlap: glyph boxes
/// of adjacent rows touch by design.
const SLACK: f32 = 1.5;

/// One row of text as drawn: its rectangle, the part of it that is visible and its text.
struct Row {
    rect: Rect,
    visible: Rect,
    clip: Rect,
    text: String,
    /// Which painted text it belongs to (rows of one text never collide with each other).
    owner: usize,
}

/// Every problem with the text of `shapes` in a window of `screen`, each said in a line;
/// `has_glyph` says whether the fonts can draw a character in a font.
pub fn problems(
    shapes: &[ClippedShape],
    screen: Rect,
    mut has_glyph: impl FnMut(&FontId, char) -> bool,
) -> Vec<String> {
    let mut texts = Vec::new();
    for clipped in shapes {
        collect(
            &clipped.shape,
            clipped.clip_rect.intersect(screen),
            &mut texts,
        );
    }
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    for (owner, (text, clip)) in texts.iter().enumerate() {
        for section in &text.galley.job.sections {
            let range = section.byte_range.start.0..section.byte_range.end.0;
            let missing: String = text.galley.job.text[range]
                .chars()
                .filter(|c| !c.is_whitespace() && !has_glyph(&section.format.font_id, *c))
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "no glyph for {missing:?} in {:?}",
                    snippet(&text.galley.job.text)
                ));
            }
        }
        for placed in &text.galley.rows {
            let content: String = placed.row.glyphs.iter().map(|g| g.chr).collect();
            if content.trim().is_empty() {
                continue;
            }
            let rect = placed
                .rect_without_leading_space()
                .translate(text.pos.to_vec2());
            let visible = rect.intersect(*clip);
            if visible.width() <= 0.0 || visible.height() <= 0.0 {
                continue;
            }
            rows.push(Row {
                rect,
                visible,
                clip: *clip,
                text: content,
                owner,
            });
        }
    }
    for row in &rows {
        if row.rect.max.x > row.clip.max.x + SLACK || row.rect.min.x < row.clip.min.x - SLACK {
            problems.push(format!(
                "{:?} is cut at x {:.0}..{:.0} (its area {:.0}..{:.0})",
                snippet(&row.text),
                row.rect.min.x,
                row.rect.max.x,
                row.clip.min.x,
                row.clip.max.x
            ));
        }
    }
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[i + 1..] {
            if a.owner == b.owner {
                continue;
            }
            let both = a.visible.intersect(b.visible);
            if both.width() > SLACK && both.height() > SLACK {
                problems.push(format!(
                    "{:?} and {:?} overlap at ({:.0}, {:.0})",
                    snippet(&a.text),
                    snippet(&b.text),
                    both.min.x,
                    both.min.y
                ));
            }
        }
    }
    problems
}

fn collect<'s>(shape: &'s Shape, clip: Rect, out: &mut Vec<(&'s TextShape, Rect)>) {
    match shape {
        Shape::Text(t) if t.angle == 0.0 => out.push((t, clip)),
        Shape::Vec(shapes) => {
            for s in shapes {
                collect(s, clip, out);
            }
        }
        _ => {}
    }
}

/// The first 40 characters of a text, for a message.
fn snippet(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

/// The problems of what `ctx` painted this frame in its panels (the background layer, where
/// every panel of the window draws), for the screenshot script and the GUI tests.
pub fn frame_problems(ctx: &egui::Context) -> Vec<String> {
    let shapes: Vec<ClippedShape> = ctx.graphics(|g| {
        g.get(egui::LayerId::background())
            .map(|list| list.all_entries().cloned().collect())
            .unwrap_or_default()
    });
    let screen = ctx.content_rect();
    ctx.fonts_mut(|fonts| problems(&shapes, screen, |font, c| fonts.has_glyph(font, c)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui::{Color32, Pos2, vec2};

    fn text_at(ctx: &egui::Context, text: &str, pos: Pos2, clip: Rect) -> ClippedShape {
        let galley = ctx.fonts_mut(|f| {
            f.layout_no_wrap(text.into(), FontId::proportional(14.0), Color32::WHITE)
        });
        ClippedShape {
            clip_rect: clip,
            shape: Shape::galley(pos, galley, Color32::WHITE),
            transform_after_tessellation: Default::default(),
        }
    }

    fn with_fonts(check: impl FnOnce(&egui::Context)) {
        let ctx = egui::Context::default();
        let _ = ctx.run_ui(egui::RawInput::default(), |_| {});
        check(&ctx);
    }

    #[test]
    fn overlapping_cut_and_boxed_text_are_found_and_neat_text_is_not() {
        with_fonts(|ctx| {
            let wide = Rect::from_min_size(Pos2::ZERO, vec2(800.0, 600.0));
            let neat = [
                text_at(ctx, "Source", Pos2::new(10.0, 10.0), wide),
                text_at(ctx, "Reference", Pos2::new(200.0, 10.0), wide),
                text_at(ctx, "next line", Pos2::new(10.0, 30.0), wide),
            ];
            let has = |f: &FontId, c| ctx.fonts_mut(|fonts| fonts.has_glyph(f, c));
            assert_eq!(problems(&neat, wide, has), Vec::<String>::new());

            let column = Rect::from_min_size(Pos2::ZERO, vec2(60.0, 600.0));
            let bad = [
                text_at(ctx, "a long output text", Pos2::new(10.0, 10.0), wide),
                text_at(ctx, "over it", Pos2::new(40.0, 12.0), wide),
                text_at(ctx, "3,000 mg in one day", Pos2::new(10.0, 100.0), column),
                text_at(ctx, "check ✘", Pos2::new(10.0, 200.0), wide),
                text_at(ctx, "past the window", Pos2::new(760.0, 300.0), wide),
            ];
            let has = |f: &FontId, c| ctx.fonts_mut(|fonts| fonts.has_glyph(f, c));
            let found = problems(&bad, wide, has);
            assert!(found.iter().any(|p| p.contains("overlap")), "{found:?}");
            assert!(
                found
                    .iter()
                    .any(|p| p.contains("\"3,000 mg in one day\" is cut")),
                "{found:?}"
            );
            assert!(
                found.iter().any(|p| p.contains("no glyph for \"✘\"")),
                "{found:?}"
            );
            assert!(
                found
                    .iter()
                    .any(|p| p.contains("\"past the window\" is cut")),
                "{found:?}"
            );
            assert_eq!(found.len(), 4, "{found:?}");

            // Scrolled out of view, or cut only vertically by a scrolled area: no problem.
            let short = Rect::from_min_size(Pos2::ZERO, vec2(800.0, 20.0));
            let scrolled = [
                text_at(ctx, "above", Pos2::new(10.0, -40.0), short),
                text_at(ctx, "half shown", Pos2::new(10.0, 12.0), short),
            ];
            let has = |f: &FontId, c| ctx.fonts_mut(|fonts| fonts.has_glyph(f, c));
            assert_eq!(problems(&scrolled, wide, has), Vec::<String>::new());
        });
    }
}
