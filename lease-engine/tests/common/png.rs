//! A tiny line-chart renderer writing palette PNGs, for the simulation plots (test helper only).
//!
//! Compression: PNG filter "Up" on every row, then DEFLATE with fixed Huffman codes, literals and
//! distance-1 matches (run lengths): plots are mostly runs of one colour, so this gets within a
//! small factor of zlib without a dependency.

/// Palette: 0 white, 1 light grey (grid), 2 black, 3 red, 4 green, 5 blue, 6 grey, 7 purple,
/// 8 orange.
pub const PALETTE: [[u8; 3]; 9] = [
    [255, 255, 255],
    [225, 225, 225],
    [0, 0, 0],
    [214, 39, 40],
    [44, 160, 44],
    [31, 119, 180],
    [127, 127, 127],
    [148, 103, 189],
    [255, 127, 14],
];

pub struct Canvas {
    pub w: usize,
    pub h: usize,
    px: Vec<u8>,
}

impl Canvas {
    pub fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            px: vec![0; w * h],
        }
    }

    pub fn set(&mut self, x: i64, y: i64, c: u8) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            self.px[y as usize * self.w + x as usize] = c;
        }
    }

    pub fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: u8, thick: bool) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, c);
            if thick {
                self.set(x, y + 1, c);
                self.set(x + 1, y, c);
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    pub fn png(&self) -> Vec<u8> {
        // Filtered scanlines: filter type 2 (Up).
        let mut raw = Vec::with_capacity((self.w + 1) * self.h);
        for y in 0..self.h {
            raw.push(2);
            for x in 0..self.w {
                let up = if y == 0 {
                    0
                } else {
                    self.px[(y - 1) * self.w + x]
                };
                raw.push(self.px[y * self.w + x].wrapping_sub(up));
            }
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&(self.w as u32).to_be_bytes());
        ihdr.extend_from_slice(&(self.h as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 3, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"PLTE", &PALETTE.concat());
        chunk(&mut out, b"IDAT", &zlib(&raw));
        chunk(&mut out, b"IEND", &[]);
        out
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, count: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    /// A Huffman code, sent most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        let rev = code.reverse_bits() >> (32 - len);
        self.put(rev, len);
    }
    fn literal(&mut self, sym: u32) {
        match sym {
            0..=143 => self.code(0x30 + sym, 8),
            144..=255 => self.code(0x190 + sym - 144, 9),
            256..=279 => self.code(sym - 256, 7),
            _ => self.code(0xc0 + sym - 280, 8),
        }
    }
    /// A match of `len` (3..=258) at distance 1.
    fn run(&mut self, len: u32) {
        const BASE: [u32; 29] = [
            3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99,
            115, 131, 163, 195, 227, 258,
        ];
        const EXTRA: [u32; 29] = [
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
        ];
        let i = BASE.iter().rposition(|&b| b <= len).unwrap();
        self.literal(257 + i as u32);
        self.put(len - BASE[i], EXTRA[i]);
        self.code(0, 5); // distance code 0 = distance 1
    }
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut bits = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        n: 0,
    };
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // fixed Huffman
    let mut i = 0;
    while i < data.len() {
        bits.literal(u32::from(data[i]));
        let mut run = 0;
        while i + 1 + run < data.len() && data[i + 1 + run] == data[i] && run < 258 {
            run += 1;
        }
        if run >= 3 {
            bits.run(run as u32);
            i += 1 + run;
        } else {
            i += 1;
        }
    }
    bits.literal(256);
    if bits.n > 0 {
        bits.out.push(bits.acc as u8);
    }
    let mut out = bits.out;
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// A line chart: `series` = (colour, points (x, y)); axes from 0 to `x_max` / `y_max` with grid
/// lines every `x_grid` / `y_grid`.
pub fn chart(
    series: &[(u8, Vec<(f64, f64)>)],
    x_max: f64,
    y_max: f64,
    x_grid: f64,
    y_grid: f64,
) -> Vec<u8> {
    let (w, h, m) = (900usize, 420usize, 30i64);
    let mut c = Canvas::new(w, h);
    let px = |x: f64| m + (x / x_max * (w as f64 - 2.0 * m as f64)) as i64;
    let py = |y: f64| h as i64 - m - (y / y_max * (h as f64 - 2.0 * m as f64)) as i64;
    let mut g = 0.0;
    while g <= x_max + 1e-9 {
        c.line((px(g), py(0.0)), (px(g), py(y_max)), 1, false);
        g += x_grid;
    }
    let mut g = 0.0;
    while g <= y_max + 1e-9 {
        c.line((px(0.0), py(g)), (px(x_max), py(g)), 1, false);
        g += y_grid;
    }
    c.line((px(0.0), py(0.0)), (px(x_max), py(0.0)), 2, false);
    c.line((px(0.0), py(0.0)), (px(0.0), py(y_max)), 2, false);
    for (colour, pts) in series {
        for pair in pts.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            c.line(
                (px(a.0), py(a.1.min(y_max))),
                (px(b.0), py(b.1.min(y_max))),
                *colour,
                true,
            );
        }
    }
    c.png()
}
