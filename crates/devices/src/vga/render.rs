//! Drawing the displayed picture: text, planar 16-colour, CGA 4-colour, 256-colour (chain-4
//! and unchained) and DISPI modes, into an RGBA frame with changed-row tracking.

use std::ops::Range;

use super::*;

/// Largest frame side drawn (larger CRTC programming is clipped).
const MAX_SIDE: usize = 4096;
/// Frame size shown before any mode has been programmed.
const DEFAULT_SIZE: (usize, usize) = (640, 480);

/// A rendered frame. Pixels are `u32` whose little-endian bytes are R, G, B, A (the byte
/// order of a canvas `ImageData`), row-major, `width * height` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The pixels.
    pub pixels: &'a [u32],
    /// Rows that changed since the previous [`Vga::render`].
    pub dirty_rows: Range<usize>,
}

/// What the display shows, for the page and QMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeInfo {
    /// Width of the rendered frame in pixels.
    pub width: usize,
    /// Height of the rendered frame in pixels.
    pub height: usize,
    /// Text mode.
    pub text: bool,
    /// Bits per pixel (4 for text and 16-colour modes, 2 for CGA 4-colour, 8 for 256-colour,
    /// the DISPI depth otherwise).
    pub bpp: u8,
    /// Text columns (0 in graphics modes).
    pub cols: usize,
    /// Text rows (0 in graphics modes).
    pub rows: usize,
}

/// Render-side state kept between frames (not saved: it is rebuilt on restore).
#[derive(Default)]
pub(super) struct RenderCache {
    frame: Vec<u32>,
    width: usize,
    height: usize,
    full: bool,
    key: Vec<u8>,
    cursor_on: bool,
    blink_on: bool,
    row: Vec<u32>,
}

impl RenderCache {
    /// Forces a full redraw at the next render.
    pub(super) fn invalidate(&mut self) {
        self.full = true;
    }

    /// The DAC changed: every pixel may have changed colour.
    pub(super) fn palette_changed(&mut self) {
        self.full = true;
    }
}

/// CRTC addressing of the current mode.
#[derive(Clone, Copy, Debug)]
struct Crtc {
    /// Character clocks per line.
    clocks: usize,
    /// Visible scanlines.
    scanlines: usize,
    /// Scanlines per character row (max scan line + 1).
    char_h: usize,
    /// Double scan.
    ds: bool,
    /// Row pitch in memory address units.
    pitch: usize,
    /// Start address.
    start: usize,
    /// Line compare scanline.
    line_compare: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Blank,
    Text,
    Planar16,
    Cga4,
    Color256,
    Dispi(u16),
}

fn rgba(r: u8, g: u8, b: u8) -> u32 {
    u32::from_le_bytes([r, g, b, 0xFF])
}

fn c6to8(v: u8) -> u8 {
    (v << 2) | (v >> 4)
}

impl Vga {
    fn crtc_geometry(&self) -> Crtc {
        let c = &self.crtc;
        let ov = c[CR_OVERFLOW];
        let vde = usize::from(c[CR_V_DISPLAY_END])
            | (usize::from(ov >> 1 & 1) << 8)
            | (usize::from(ov >> 6 & 1) << 9);
        let lc = usize::from(c[CR_LINE_COMPARE])
            | (usize::from(ov >> 4 & 1) << 8)
            | (usize::from(c[CR_MAX_SCAN] >> 6 & 1) << 9);
        Crtc {
            clocks: usize::from(c[CR_H_DISPLAY_END]) + 1,
            scanlines: vde + 1,
            char_h: usize::from(c[CR_MAX_SCAN] & 0x1F) + 1,
            ds: c[CR_MAX_SCAN] & 0x80 != 0,
            pitch: usize::from(c[CR_OFFSET]) * 2,
            start: (usize::from(c[CR_START_HI]) << 8) | usize::from(c[CR_START_LO]),
            line_compare: lc,
        }
    }

    fn kind(&self) -> Kind {
        if self.dispi_enabled() {
            return Kind::Dispi(self.dispi[DISPI_INDEX_BPP as usize]);
        }
        if self.seq[SR_CLOCKING] & SR01_SCREEN_OFF != 0 || self.ar_index & AR_INDEX_PAS == 0 {
            return Kind::Blank;
        }
        if self.gc[GR_MISC] & 1 == 0 {
            Kind::Text
        } else if self.ar[AR_MODE] & 0x40 != 0 {
            Kind::Color256
        } else if self.gc[GR_MODE] & 0x20 != 0 {
            Kind::Cga4
        } else {
            Kind::Planar16
        }
    }

    /// Memory offset (within a plane) of CRTC address `ma` on row scan line `scan`.
    fn translate(&self, ma: usize, scan: usize) -> usize {
        let mode = self.crtc[CR_MODE_CONTROL];
        let mut off = if self.crtc[CR_UNDERLINE] & 0x40 != 0 {
            ma << 2
        } else if mode & 0x40 == 0 {
            // Word mode. Hardware rotates MA13/MA15 into bit 0; programs that scroll the text
            // start address past 8K characters expect plain doubling, so that is what is done.
            ma << 1
        } else {
            ma
        };
        if mode & 1 == 0 {
            off = (off & !(1 << 13)) | ((scan & 1) << 13);
        }
        if mode & 2 == 0 {
            off = (off & !(1 << 14)) | (((scan >> 1) & 1) << 14);
        }
        off & (PLANE_SIZE - 1)
    }

    fn planes(&self, off: usize) -> [u8; 4] {
        let i = off * 4;
        match self.vram.get(i..i + 4) {
            Some(s) => [s[0], s[1], s[2], s[3]],
            None => [0; 4],
        }
    }

    fn dac_color(&self, index: u8) -> u32 {
        let i = usize::from(index & self.pel_mask) * 3;
        let (r, g, b) = (self.dac[i], self.dac[i + 1], self.dac[i + 2]);
        if self.dispi[DISPI_INDEX_ENABLE as usize] & DISPI_8BIT_DAC != 0 {
            rgba(r, g, b)
        } else {
            rgba(c6to8(r & 0x3F), c6to8(g & 0x3F), c6to8(b & 0x3F))
        }
    }

    /// The 16 colours of 4-bit pixel values through the attribute controller.
    pub(super) fn palette16(&self) -> [u32; 16] {
        let mode = self.ar[AR_MODE];
        let cs = self.ar[AR_COLOR_SELECT];
        let pe = self.ar[AR_PLANE_ENABLE] & 0x0F;
        std::array::from_fn(|v| {
            let pal = self.ar[usize::from(v as u8 & pe)];
            let idx = if mode & 0x80 != 0 {
                ((cs & 0x0F) << 4) | (pal & 0x0F)
            } else {
                ((cs & 0x0C) << 4) | (pal & 0x3F)
            };
            self.dac_color(idx)
        })
    }

    /// Frame size and pixel repetition of the current mode: (width, height, line repeat).
    fn frame_size(&self, kind: Kind, g: &Crtc) -> (usize, usize, usize) {
        let (w, h, rep) = match kind {
            Kind::Blank => {
                if self.render.width > 0 {
                    (self.render.width, self.render.height, 1)
                } else {
                    (DEFAULT_SIZE.0, DEFAULT_SIZE.1, 1)
                }
            }
            Kind::Text => {
                let cw = if self.seq[SR_CLOCKING] & SR01_DOT8 != 0 {
                    8
                } else {
                    9
                };
                let cw = if self.seq[SR_CLOCKING] & SR01_DOT_CLOCK_DIV2 != 0 {
                    cw * 2
                } else {
                    cw
                };
                (g.clocks * cw, g.scanlines, 1)
            }
            Kind::Dispi(_) => (
                usize::from(self.dispi[DISPI_INDEX_XRES as usize]),
                usize::from(self.dispi[DISPI_INDEX_YRES as usize]),
                1,
            ),
            Kind::Planar16 | Kind::Cga4 | Kind::Color256 => {
                let per_clock = if kind == Kind::Color256 { 4 } else { 8 };
                let subst = self.crtc[CR_MODE_CONTROL] & 3 != 3;
                let distinct = if subst { g.char_h } else { 1 };
                let rep = ((g.char_h << usize::from(g.ds)) / distinct).max(1);
                (g.clocks * per_clock, g.scanlines / rep, rep)
            }
        };
        (w.clamp(1, MAX_SIDE), h.clamp(1, MAX_SIDE), rep)
    }

    /// The current mode, as the page shows it.
    pub fn mode_info(&self) -> ModeInfo {
        let kind = self.kind();
        let g = self.crtc_geometry();
        let (width, height, _) = self.frame_size(kind, &g);
        let (text, bpp) = match kind {
            Kind::Blank => (self.gc[GR_MISC] & 1 == 0, 4),
            Kind::Text => (true, 4),
            Kind::Planar16 => (false, 4),
            Kind::Cga4 => (false, 2),
            Kind::Color256 => (false, 8),
            Kind::Dispi(b) => (false, b as u8),
        };
        let (cols, rows) = if text && !matches!(kind, Kind::Dispi(_)) {
            (g.clocks, g.scanlines / (g.char_h << usize::from(g.ds)))
        } else {
            (0, 0)
        };
        ModeInfo {
            width,
            height,
            text,
            bpp,
            cols,
            rows,
        }
    }

    fn any_dirty(&self, range: Range<usize>) -> bool {
        if range.is_empty() {
            return false;
        }
        let first = range.start / DIRTY_PAGE;
        let last = (range.end - 1) / DIRTY_PAGE;
        (first..=last).any(|p| {
            self.dirty
                .get(p / 64)
                .is_some_and(|w| w & (1 << (p % 64)) != 0)
        })
    }

    fn display_key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(96);
        k.push(self.misc);
        k.extend_from_slice(&self.seq[..5]);
        k.extend_from_slice(&self.gc[5..7]);
        k.extend_from_slice(&self.crtc);
        k.extend_from_slice(&self.ar);
        k.push(self.ar_index & AR_INDEX_PAS);
        k.push(self.pel_mask);
        for d in self.dispi {
            k.extend_from_slice(&d.to_le_bytes());
        }
        k
    }

    /// Draws what the display shows at virtual time `now` (blink phases) into the internal
    /// frame. Returns the frame when any row changed since the last call, `None` otherwise.
    pub fn render(&mut self, now: VirtTime) -> Option<Frame<'_>> {
        let kind = self.kind();
        let g = self.crtc_geometry();
        let (w, h, rep) = self.frame_size(kind, &g);
        let key = self.display_key();
        let frame_no = now / FRAME_NS;
        let cursor_on = (frame_no / 16).is_multiple_of(2);
        let blink_on = (frame_no / 32).is_multiple_of(2);
        let mut full = self.render.full || key != self.render.key;
        if w != self.render.width || h != self.render.height {
            self.render.frame = vec![0; w * h];
            self.render.width = w;
            self.render.height = h;
            full = true;
        }
        let blink_changed = cursor_on != self.render.cursor_on || blink_on != self.render.blink_on;
        self.render.cursor_on = cursor_on;
        self.render.blink_on = blink_on;
        self.render.key = key;
        self.render.full = false;

        let mut row = std::mem::take(&mut self.render.row);
        row.clear();
        row.resize(w, 0);
        let mut frame = std::mem::take(&mut self.render.frame);
        let mut dirty: Option<Range<usize>> = None;
        let mut text_ctx = None;
        let pal16 = self.palette16();
        let pal256: Vec<u32> = if matches!(kind, Kind::Color256 | Kind::Dispi(8)) {
            (0..=255u8).map(|i| self.dac_color(i)).collect()
        } else {
            Vec::new()
        };
        let text_redraw =
            kind == Kind::Text && (full || blink_changed || self.any_dirty(0..PLANE_SIZE * 4));
        if kind == Kind::Text {
            text_ctx = Some(self.text_ctx(&g, cursor_on, blink_on));
        }
        for y in 0..h {
            let redraw = match kind {
                Kind::Blank => full,
                Kind::Text => text_redraw,
                Kind::Dispi(bpp) => full || self.any_dirty(self.dispi_row_span(bpp, y)),
                _ => full || self.any_dirty(self.graphics_row_span(&g, y * rep)),
            };
            if !redraw {
                continue;
            }
            match kind {
                Kind::Blank => row.fill(rgba(0, 0, 0)),
                Kind::Text => {
                    if let Some(t) = &text_ctx {
                        self.text_row(t, &g, &pal16, y, &mut row);
                    }
                }
                Kind::Dispi(bpp) => self.dispi_row(bpp, y, &pal256, &mut row),
                _ => self.graphics_row(kind, &g, y * rep, &pal16, &pal256, &mut row),
            }
            let dst = &mut frame[y * w..(y + 1) * w];
            if full || dst != row.as_slice() {
                dst.copy_from_slice(&row);
                dirty = Some(match dirty {
                    Some(d) => d.start..y + 1,
                    None => y..y + 1,
                });
            }
        }
        self.render.frame = frame;
        self.render.row = row;
        self.dirty.fill(0);
        let dirty_rows = dirty?;
        Some(Frame {
            width: w,
            height: h,
            pixels: &self.render.frame,
            dirty_rows,
        })
    }

    /// The last rendered frame (without drawing).
    pub fn frame(&self) -> Frame<'_> {
        Frame {
            width: self.render.width,
            height: self.render.height,
            pixels: &self.render.frame,
            dirty_rows: 0..0,
        }
    }

    /// A binary PPM ("P6") of exactly what the display shows at `now`.
    pub fn screendump_ppm(&mut self, now: VirtTime) -> Vec<u8> {
        self.render(now);
        let (w, h) = (self.render.width, self.render.height);
        let header = format!("P6\n{w} {h}\n255\n");
        let mut out = Vec::with_capacity(header.len() + w * h * 3);
        out.extend_from_slice(header.as_bytes());
        for p in &self.render.frame {
            let [r, g, b, _] = p.to_le_bytes();
            out.extend_from_slice(&[r, g, b]);
        }
        out
    }

    /// The text on screen in text modes, one string per row with trailing spaces removed and
    /// CP437 mapped to Unicode; `None` in graphics modes.
    pub fn text_lines(&self) -> Option<Vec<String>> {
        if self.dispi_enabled() || self.gc[GR_MISC] & 1 != 0 {
            return None;
        }
        let g = self.crtc_geometry();
        let rows = g.scanlines / (g.char_h << usize::from(g.ds));
        let mut out = Vec::with_capacity(rows);
        for r in 0..rows {
            let mut s: String = (0..g.clocks)
                .map(|c| {
                    let off = self.translate(g.start + r * g.pitch + c, 0);
                    cp437::to_char(self.planes(off)[0])
                })
                .collect();
            s.truncate(s.trim_end().len());
            out.push(s);
        }
        Some(out)
    }

    // ------------------------------------------------------------------ text

    fn text_ctx(&self, g: &Crtc, cursor_on: bool, blink_on: bool) -> TextCtx {
        let sr3 = self.seq[SR_CHAR_MAP];
        let map_a = ((sr3 >> 3) & 4) | ((sr3 >> 2) & 3);
        let map_b = ((sr3 >> 2) & 4) | (sr3 & 3);
        let base = |m: u8| (usize::from(m & 3) * 2 + usize::from(m >> 2)) * 0x2000;
        let cw = if self.seq[SR_CLOCKING] & SR01_DOT8 != 0 {
            8
        } else {
            9
        };
        let cs = self.crtc[CR_CURSOR_START];
        let ce = self.crtc[CR_CURSOR_END] & 0x1F;
        let cursor = (cs & 0x20 == 0 && cursor_on && (cs & 0x1F) <= ce).then(|| {
            let addr =
                (usize::from(self.crtc[CR_CURSOR_HI]) << 8) | usize::from(self.crtc[CR_CURSOR_LO]);
            (addr, usize::from(cs & 0x1F)..usize::from(ce) + 1)
        });
        let _ = g;
        TextCtx {
            font_a: base(map_a),
            font_b: base(map_b),
            cw,
            double: self.seq[SR_CLOCKING] & SR01_DOT_CLOCK_DIV2 != 0,
            line_graphics: self.ar[AR_MODE] & 0x04 != 0,
            blink_enabled: self.ar[AR_MODE] & 0x08 != 0,
            blink_on,
            cursor,
            underline: usize::from(self.crtc[CR_UNDERLINE] & 0x1F),
        }
    }

    fn text_row(&self, t: &TextCtx, g: &Crtc, pal: &[u32; 16], y: usize, row: &mut [u32]) {
        let per_row = g.char_h << usize::from(g.ds);
        let char_row = y / per_row;
        let line = (y % per_row) >> usize::from(g.ds);
        let row_ma = g.start + char_row * g.pitch;
        let step = if t.double { t.cw * 2 } else { t.cw };
        for c in 0..g.clocks {
            let ma = row_ma + c;
            let p = self.planes(self.translate(ma, line));
            let (ch, attr) = (p[0], p[1]);
            let mut fg = attr & 0x0F;
            let mut bg = attr >> 4;
            if t.blink_enabled {
                bg &= 7;
                if attr & 0x80 != 0 && !t.blink_on {
                    fg = bg;
                }
            }
            let font = if attr & 0x08 != 0 { t.font_a } else { t.font_b };
            let glyph_off = font + usize::from(ch) * 32 + line;
            let mut bits = u16::from(self.planes(glyph_off & (PLANE_SIZE - 1))[2]) << 1;
            if t.cw == 9 && t.line_graphics && (0xC0..=0xDF).contains(&ch) {
                bits |= bits >> 1 & 1;
            }
            if line == t.underline && attr & 0x77 == 0x01 {
                bits = 0x1FF;
            }
            if let Some((cur, lines)) = &t.cursor {
                if *cur == ma && lines.contains(&line) {
                    bits = 0x1FF;
                }
            }
            let (fgc, bgc) = (pal[usize::from(fg)], pal[usize::from(bg)]);
            let x0 = c * step;
            for d in 0..t.cw {
                let on = bits & (0x100 >> d) != 0;
                let px = if on { fgc } else { bgc };
                if t.double {
                    if let Some(s) = row.get_mut(x0 + 2 * d..x0 + 2 * d + 2) {
                        s.fill(px);
                    }
                } else if let Some(s) = row.get_mut(x0 + d) {
                    *s = px;
                }
            }
        }
    }

    // ------------------------------------------------------------------ graphics

    /// Row address and row scan line of scanline `s`.
    fn scan_address(&self, g: &Crtc, s: usize) -> (usize, usize) {
        let per_row = g.char_h << usize::from(g.ds);
        let (base, s) = if g.line_compare < g.scanlines && s > g.line_compare {
            (0, s - g.line_compare - 1)
        } else {
            (g.start, s)
        };
        (
            base + (s / per_row) * g.pitch,
            (s >> usize::from(g.ds)) % g.char_h,
        )
    }

    /// Video memory bytes read for scanline `s` (conservative when wrapping).
    fn graphics_row_span(&self, g: &Crtc, s: usize) -> Range<usize> {
        let (ma, scan) = self.scan_address(g, s);
        let a = self.translate(ma, scan);
        let b = self.translate(ma + g.clocks, scan);
        if b >= a {
            a * 4..b * 4 + 4
        } else {
            0..PLANE_SIZE * 4
        }
    }

    fn graphics_row(
        &self,
        kind: Kind,
        g: &Crtc,
        s: usize,
        pal16: &[u32; 16],
        pal256: &[u32],
        row: &mut [u32],
    ) {
        let (ma, scan) = self.scan_address(g, s);
        // Horizontal pixel panning (AR13): whole pixels in 16-colour modes, pairs of dots in
        // 256-colour modes. One more character clock is fetched to fill the right edge.
        let pan_reg = usize::from(self.ar[AR_PANNING] & 7);
        let pan = if kind == Kind::Color256 {
            pan_reg >> 1
        } else {
            pan_reg
        };
        let clocks = g.clocks + usize::from(pan != 0);
        let mut put = |px: usize, c: u32| {
            if let Some(d) = px.checked_sub(pan).and_then(|x| row.get_mut(x)) {
                *d = c;
            }
        };
        for k in 0..clocks {
            let p = self.planes(self.translate(ma + k, scan));
            match kind {
                Kind::Color256 => {
                    for (i, &v) in p.iter().enumerate() {
                        put(k * 4 + i, pal256.get(usize::from(v)).copied().unwrap_or(0));
                    }
                }
                Kind::Cga4 => {
                    for i in 0..8 {
                        let byte = if i < 4 { p[0] } else { p[1] };
                        let v = (byte >> (6 - 2 * (i & 3))) & 3;
                        put(k * 8 + i, pal16[usize::from(v)]);
                    }
                }
                _ => {
                    for i in 0..8 {
                        let b = 7 - i;
                        let v = (p[0] >> b & 1)
                            | (p[1] >> b & 1) << 1
                            | (p[2] >> b & 1) << 2
                            | (p[3] >> b & 1) << 3;
                        put(k * 8 + i, pal16[usize::from(v)]);
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ DISPI

    fn dispi_layout(&self, bpp: u16) -> (usize, usize, usize) {
        let pitch = self.dispi_pitch(self.dispi[DISPI_INDEX_VIRT_WIDTH as usize]);
        let bytes = usize::from(bpp).div_ceil(8);
        let start = usize::from(self.dispi[DISPI_INDEX_Y_OFFSET as usize])
            .saturating_mul(pitch)
            .saturating_add(usize::from(self.dispi[DISPI_INDEX_X_OFFSET as usize]) * bytes);
        (start, pitch, bytes)
    }

    /// Plane offset of the first byte of row `y` of a 4-bit DISPI mode (8 pixels per byte).
    fn dispi4_row_start(&self, y: usize) -> usize {
        let vw = usize::from(self.dispi[DISPI_INDEX_VIRT_WIDTH as usize]) / 8;
        let row = usize::from(self.dispi[DISPI_INDEX_Y_OFFSET as usize]) + y;
        row.saturating_mul(vw) + usize::from(self.dispi[DISPI_INDEX_X_OFFSET as usize]) / 8
    }

    fn dispi_row_span(&self, bpp: u16, y: usize) -> Range<usize> {
        if bpp == 4 {
            let a = self.dispi4_row_start(y).saturating_mul(4).min(VRAM_SIZE);
            let b = a.saturating_add(usize::from(self.dispi[DISPI_INDEX_XRES as usize]) / 2);
            return a..b.min(VRAM_SIZE);
        }
        let (start, pitch, bytes) = self.dispi_layout(bpp);
        let a = start.saturating_add(y.saturating_mul(pitch)).min(VRAM_SIZE);
        let b = (a + usize::from(self.dispi[DISPI_INDEX_XRES as usize]) * bytes).min(VRAM_SIZE);
        a..b
    }

    fn dispi_row(&self, bpp: u16, y: usize, pal256: &[u32], row: &mut [u32]) {
        let span = self.dispi_row_span(bpp, y);
        let src = self.vram.get(span).unwrap_or(&[]);
        row.fill(rgba(0, 0, 0));
        match bpp {
            8 => {
                for (d, &v) in row.iter_mut().zip(src) {
                    *d = pal256.get(usize::from(v)).copied().unwrap_or(0);
                }
            }
            15 | 16 => {
                for (d, s) in row.iter_mut().zip(src.chunks_exact(2)) {
                    let v = u16::from_le_bytes([s[0], s[1]]);
                    let (r, g, b) = if bpp == 15 {
                        ((v >> 10) & 0x1F, (v >> 5) & 0x1F, v & 0x1F)
                    } else {
                        ((v >> 11) & 0x1F, (v >> 5) & 0x3F, v & 0x1F)
                    };
                    let e5 = |c: u16| ((c << 3) | (c >> 2)) as u8;
                    let g8 = if bpp == 15 {
                        e5(g)
                    } else {
                        ((g << 2) | (g >> 4)) as u8
                    };
                    *d = rgba(e5(r), g8, e5(b));
                }
            }
            24 => {
                for (d, s) in row.iter_mut().zip(src.chunks_exact(3)) {
                    *d = rgba(s[2], s[1], s[0]);
                }
            }
            32 => {
                for (d, s) in row.iter_mut().zip(src.chunks_exact(4)) {
                    *d = rgba(s[2], s[1], s[0]);
                }
            }
            4 => {
                // Planar: one byte of each plane per 8 pixels, through the attribute palette.
                let pal = self.palette16();
                let start = self.dispi4_row_start(y);
                let bytes = usize::from(self.dispi[DISPI_INDEX_XRES as usize]) / 8;
                for k in 0..bytes {
                    let p = self.planes(start.saturating_add(k));
                    for i in 0..8 {
                        let b = 7 - i;
                        let v = (p[0] >> b & 1)
                            | (p[1] >> b & 1) << 1
                            | (p[2] >> b & 1) << 2
                            | (p[3] >> b & 1) << 3;
                        if let Some(d) = row.get_mut(k * 8 + i) {
                            *d = pal[usize::from(v)];
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

struct TextCtx {
    font_a: usize,
    font_b: usize,
    cw: usize,
    double: bool,
    line_graphics: bool,
    blink_enabled: bool,
    blink_on: bool,
    cursor: Option<(usize, Range<usize>)>,
    underline: usize,
}
