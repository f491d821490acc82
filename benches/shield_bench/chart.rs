//! A horizontal bar chart written as a PNG with no dependencies: an indexed
//! colour canvas, a 5x7 bitmap font (upper case, digits, a little
//! punctuation), and a PNG encoder whose deflate stream uses the fixed
//! Huffman code with run matches (distance 1 and one row up), which is all a
//! flat-coloured chart needs to stay small.

pub const WHITE: u8 = 0;
pub const BLACK: u8 = 1;
pub const GRID: u8 = 2;
pub const TEXT: u8 = 3;
pub const DARK: u8 = 4;
pub const LIGHT: u8 = 5;
pub const RED: u8 = 6;
pub const GREEN: u8 = 7;
pub const ORANGE: u8 = 8;
pub const GREY: u8 = 9;

const PALETTE: [[u8; 3]; 10] = [
    [255, 255, 255],
    [0, 0, 0],
    [225, 225, 225],
    [60, 60, 60],
    [31, 86, 160],
    [140, 180, 225],
    [210, 30, 30],
    [60, 160, 80],
    [235, 140, 30],
    [150, 150, 150],
];

/// 5x7 glyphs, rows top to bottom, `#` = ink.
const FONT: &[(char, &str)] = &[
    ('A', ".###.|#...#|#...#|#####|#...#|#...#|#...#"),
    ('B', "####.|#...#|#...#|####.|#...#|#...#|####."),
    ('C', ".###.|#...#|#....|#....|#....|#...#|.###."),
    ('D', "####.|#...#|#...#|#...#|#...#|#...#|####."),
    ('E', "#####|#....|#....|####.|#....|#....|#####"),
    ('F', "#####|#....|#....|####.|#....|#....|#...."),
    ('G', ".###.|#...#|#....|#.###|#...#|#...#|.####"),
    ('H', "#...#|#...#|#...#|#####|#...#|#...#|#...#"),
    ('I', ".###.|..#..|..#..|..#..|..#..|..#..|.###."),
    ('J', "..###|...#.|...#.|...#.|...#.|#..#.|.##.."),
    ('K', "#...#|#..#.|#.#..|##...|#.#..|#..#.|#...#"),
    ('L', "#....|#....|#....|#....|#....|#....|#####"),
    ('M', "#...#|##.##|#.#.#|#.#.#|#...#|#...#|#...#"),
    ('N', "#...#|#...#|##..#|#.#.#|#..##|#...#|#...#"),
    ('O', ".###.|#...#|#...#|#...#|#...#|#...#|.###."),
    ('P', "####.|#...#|#...#|####.|#....|#....|#...."),
    ('Q', ".###.|#...#|#...#|#...#|#.#.#|#..#.|.##.#"),
    ('R', "####.|#...#|#...#|####.|#.#..|#..#.|#...#"),
    ('S', ".####|#....|#....|.###.|....#|....#|####."),
    ('T', "#####|..#..|..#..|..#..|..#..|..#..|..#.."),
    ('U', "#...#|#...#|#...#|#...#|#...#|#...#|.###."),
    ('V', "#...#|#...#|#...#|#...#|#...#|.#.#.|..#.."),
    ('W', "#...#|#...#|#...#|#.#.#|#.#.#|#.#.#|.#.#."),
    ('X', "#...#|#...#|.#.#.|..#..|.#.#.|#...#|#...#"),
    ('Y', "#...#|#...#|.#.#.|..#..|..#..|..#..|..#.."),
    ('Z', "#####|....#|...#.|..#..|.#...|#....|#####"),
    ('0', ".###.|#...#|#..##|#.#.#|##..#|#...#|.###."),
    ('1', "..#..|.##..|..#..|..#..|..#..|..#..|.###."),
    ('2', ".###.|#...#|....#|...#.|..#..|.#...|#####"),
    ('3', "#####|...#.|..#..|...#.|....#|#...#|.###."),
    ('4', "...#.|..##.|.#.#.|#..#.|#####|...#.|...#."),
    ('5', "#####|#....|####.|....#|....#|#...#|.###."),
    ('6', "..##.|.#...|#....|####.|#...#|#...#|.###."),
    ('7', "#####|....#|...#.|..#..|.#...|.#...|.#..."),
    ('8', ".###.|#...#|#...#|.###.|#...#|#...#|.###."),
    ('9', ".###.|#...#|#...#|.####|....#|...#.|.##.."),
    (' ', ".....|.....|.....|.....|.....|.....|....."),
    ('.', ".....|.....|.....|.....|.....|.##..|.##.."),
    (',', ".....|.....|.....|.....|.##..|..#..|.#..."),
    (':', ".....|.##..|.##..|.....|.##..|.##..|....."),
    ('-', ".....|.....|.....|#####|.....|.....|....."),
    ('_', ".....|.....|.....|.....|.....|.....|#####"),
    ('/', "....#|....#|...#.|..#..|.#...|#....|#...."),
    ('(', "...#.|..#..|.#...|.#...|.#...|..#..|...#."),
    (')', ".#...|..#..|...#.|...#.|...#.|..#..|.#..."),
    ('[', ".###.|.#...|.#...|.#...|.#...|.#...|.###."),
    (']', ".###.|...#.|...#.|...#.|...#.|...#.|.###."),
    ('=', ".....|.....|#####|.....|#####|.....|....."),
    ('<', "...#.|..#..|.#...|#....|.#...|..#..|...#."),
    ('>', ".#...|..#..|...#.|....#|...#.|..#..|.#..."),
    ('+', ".....|..#..|..#..|#####|..#..|..#..|....."),
    ('*', ".....|#.#.#|.###.|#####|.###.|#.#.#|....."),
    ('%', "##...|##..#|...#.|..#..|.#...|#..##|...##"),
    ('#', ".#.#.|.#.#.|#####|.#.#.|#####|.#.#.|.#.#."),
    ('\'', "..#..|..#..|.#...|.....|.....|.....|....."),
    ('!', "..#..|..#..|..#..|..#..|..#..|.....|..#.."),
    ('?', ".###.|#...#|....#|...#.|..#..|.....|..#.."),
    ('x', ".....|.....|#...#|.#.#.|..#..|.#.#.|#...#"),
];

pub struct Canvas {
    pub w: usize,
    pub h: usize,
    px: Vec<u8>,
}

pub const SCALE: usize = 2;
pub const CHAR_W: usize = 6 * SCALE;
pub const CHAR_H: usize = 7 * SCALE;

impl Canvas {
    pub fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            px: vec![WHITE; w * h],
        }
    }

    pub fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: u8) {
        for yy in y..(y + h).min(self.h) {
            for xx in x..(x + w).min(self.w) {
                self.px[yy * self.w + xx] = c;
            }
        }
    }

    /// Draws `s` (upper-cased; unknown characters become `?`) with its top-left at (x, y).
    pub fn text(&mut self, x: usize, y: usize, s: &str, c: u8) {
        let mut cx = x;
        for ch in s.chars() {
            let ch = if ch == '×' {
                'x'
            } else {
                ch.to_ascii_uppercase()
            };
            let glyph = FONT
                .iter()
                .find(|(g, _)| *g == ch)
                .or_else(|| FONT.iter().find(|(g, _)| *g == '?'))
                .unwrap()
                .1;
            for (row, bits) in glyph.split('|').enumerate() {
                for (col, b) in bits.bytes().enumerate() {
                    if b == b'#' {
                        self.rect(cx + col * SCALE, y + row * SCALE, SCALE, SCALE, c);
                    }
                }
            }
            cx += CHAR_W;
        }
    }

    pub fn text_width(s: &str) -> usize {
        s.chars().count() * CHAR_W
    }

    pub fn png(&self) -> Vec<u8> {
        let stride = self.w + 1;
        let mut raw = Vec::with_capacity(stride * self.h);
        for row in self.px.chunks(self.w) {
            raw.push(0); // filter: none
            raw.extend_from_slice(row);
        }
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&(self.w as u32).to_be_bytes());
        ihdr.extend_from_slice(&(self.h as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 3, 0, 0, 0]); // 8-bit indexed
        let plte: Vec<u8> = PALETTE.iter().flatten().copied().collect();
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"PLTE", &plte);
        chunk(&mut out, b"IDAT", &zlib(&raw, stride));
        chunk(&mut out, b"IEND", &[]);
        out
    }
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    /// `n` bits of `v`, least significant first (deflate's bit order).
    fn put(&mut self, v: u32, n: u32) {
        self.acc |= (v as u64) << self.n;
        self.n += n;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    /// A Huffman code of `n` bits, most significant first.
    fn code(&mut self, code: u32, n: u32) {
        let rev = code.reverse_bits() >> (32 - n);
        self.put(rev, n);
    }
    fn lit(&mut self, sym: u32) {
        match sym {
            0..=143 => self.code(0x30 + sym, 8),
            144..=255 => self.code(0x190 + sym - 144, 9),
            256..=279 => self.code(sym - 256, 7),
            _ => self.code(0xC0 + sym - 280, 8),
        }
    }
    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

const LEN_BASE: [u32; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u32; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u32; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u32; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// zlib stream of one fixed-Huffman deflate block; matches are only tried at
/// distance 1 and at distance `row` (the same byte one image row up).
pub fn zlib(data: &[u8], row: usize) -> Vec<u8> {
    let mut bits = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        n: 0,
    };
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE = fixed Huffman
    let mut i = 0;
    while i < data.len() {
        let mut best = (0usize, 0usize);
        for d in [1, row] {
            if d == 0 || d > i || d > 32768 {
                continue;
            }
            let max = (data.len() - i).min(258);
            let mut l = 0;
            while l < max && data[i + l] == data[i + l - d] {
                l += 1;
            }
            if l > best.0 {
                best = (l, d);
            }
        }
        let (len, dist) = best;
        if len >= 3 {
            let li = LEN_BASE.iter().rposition(|&b| b as usize <= len).unwrap();
            bits.lit(257 + li as u32);
            bits.put(len as u32 - LEN_BASE[li], LEN_EXTRA[li]);
            let di = DIST_BASE.iter().rposition(|&b| b as usize <= dist).unwrap();
            bits.code(di as u32, 5);
            bits.put(dist as u32 - DIST_BASE[di], DIST_EXTRA[di]);
            i += len;
        } else {
            bits.lit(data[i] as u32);
            i += 1;
        }
    }
    bits.lit(256);
    let mut out = bits.finish();
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

// ---------------------------------------------------------------- bar chart

pub struct Bar {
    pub value: f64,
    pub color: u8,
    /// Text drawn right of the bar.
    pub label: String,
}

pub struct Row {
    pub label: String,
    pub bars: Vec<Bar>,
    /// Where to draw a red target mark across this row's bars.
    pub target: Option<f64>,
}

pub struct Panel {
    pub title: String,
    pub subtitle: String,
    /// A vertical reference line (value, label).
    pub reference: Option<(f64, String)>,
    pub rows: Vec<Row>,
}

const WIDTH: usize = 1200;
const LABEL_W: usize = 360;
const BAR_H: usize = 18;
const ROW_GAP: usize = 10;
const MARGIN: usize = 20;

fn panel_height(p: &Panel) -> usize {
    let rows: usize = p
        .rows
        .iter()
        .map(|r| r.bars.len().max(1) * BAR_H + ROW_GAP)
        .sum();
    3 * CHAR_H + 70 + rows
}

/// Renders the panels one under the other.
pub fn render(title: &str, panels: &[Panel]) -> Vec<u8> {
    let h = MARGIN * 2 + CHAR_H + 16 + panels.iter().map(panel_height).sum::<usize>();
    let mut c = Canvas::new(WIDTH, h);
    c.text(MARGIN, MARGIN, title, BLACK);
    let mut y = MARGIN + CHAR_H + 16;
    let x0 = MARGIN + LABEL_W;
    let bar_w = WIDTH - x0 - MARGIN - 9 * CHAR_W;
    for p in panels {
        c.text(MARGIN, y, &p.title, BLACK);
        y += CHAR_H + 6;
        c.text(MARGIN, y, &p.subtitle, TEXT);
        y += CHAR_H + 10;
        let max = p
            .rows
            .iter()
            .flat_map(|r| r.bars.iter().map(|b| b.value).chain(r.target))
            .chain(p.reference.as_ref().map(|r| r.0))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.05;
        let xv = |v: f64| x0 + ((v.max(0.0) / max) * bar_w as f64).round() as usize;
        let top = y;
        let body: usize = p
            .rows
            .iter()
            .map(|r| r.bars.len().max(1) * BAR_H + ROW_GAP)
            .sum();
        // Grid lines every 0.25 (or a coarser step for large scales).
        let step = [0.25, 0.5, 1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .find(|s| max / s <= 8.0)
            .unwrap_or(20.0);
        let mut g = 0.0;
        while g <= max {
            c.rect(xv(g), top, 1, body, GRID);
            let t = format!("{g:.2}");
            c.text(
                xv(g).saturating_sub(Canvas::text_width(&t) / 2),
                top + body + 4,
                &t,
                GREY,
            );
            g += step;
        }
        for r in &p.rows {
            let rh = r.bars.len().max(1) * BAR_H;
            let ly = y + rh.saturating_sub(CHAR_H) / 2;
            c.text(MARGIN, ly, &r.label, TEXT);
            for (i, b) in r.bars.iter().enumerate() {
                let by = y + i * BAR_H;
                if b.value.is_finite() {
                    let w = xv(b.value) - x0;
                    c.rect(x0, by + 1, w.max(1), BAR_H - 2, b.color);
                    c.text(xv(b.value) + 6, by, &b.label, TEXT);
                } else {
                    c.text(x0 + 6, by, &b.label, GREY);
                }
            }
            if let Some(t) = r.target.filter(|t| t.is_finite()) {
                c.rect(xv(t).saturating_sub(1), y.saturating_sub(3), 3, rh + 6, RED);
            }
            y += rh + ROW_GAP;
        }
        if let Some((v, label)) = &p.reference {
            c.rect(xv(*v), top, 2, body + CHAR_H + 22, BLACK);
            c.text(xv(*v) + 6, top + body + CHAR_H + 10, label, BLACK);
        }
        c.rect(x0, top, 1, body, BLACK);
        y += CHAR_H + 52;
    }
    c.png()
}

pub fn self_check() -> Vec<(&'static str, Result<(), String>)> {
    let crc = crc32(b"123456789");
    let adler = adler32(b"Wikipedia");
    vec![
        (
            "png: crc32 check value",
            if crc == 0xCBF4_3926 {
                Ok(())
            } else {
                Err(format!("{crc:08x}"))
            },
        ),
        (
            "png: adler32 check value",
            if adler == 0x11E6_0398 {
                Ok(())
            } else {
                Err(format!("{adler:08x}"))
            },
        ),
        (
            "font: every glyph is 7 rows of 5",
            if FONT
                .iter()
                .all(|(_, g)| g.split('|').count() == 7 && g.split('|').all(|r| r.len() == 5))
            {
                Ok(())
            } else {
                Err("bad glyph".into())
            },
        ),
    ]
}
