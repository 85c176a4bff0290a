//! The view state that depends on the screen's size: page sizes, list offsets, the DAG's
//! column width and scroll. The loop fits it before each frame, so that drawing only reads.

use ratatui::layout::Rect;

use super::app::App;
use super::draw;
use super::panes;

impl App {
    /// Fits the view to a screen of `area` (nothing while it is too small to draw, or while
    /// the editor covers the panes).
    pub fn fit(&mut self, area: Rect) {
        let Some(screen) = draw::screen(area) else {
            return;
        };
        if self.view.editor.is_some() {
            return;
        }
        (panes::def(self.view.pane).fit)(self, screen.body);
    }
}
