//! The input conventions of VGG weights (torchvision or Caffe) as one affine map per channel.

/// The input transform the weights expect: y\[c\] = x\[src\[c\]\] * a\[c\] + b\[c\], x RGB in \[0, 1\].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    /// Source channel of each output channel (RGB order in, the network's order out).
    pub src: [u32; 3],
    /// Scale per output channel.
    pub a: [f32; 3],
    /// Offset per output channel.
    pub b: [f32; 3],
}

/// Which input convention a weights file was trained with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preprocess {
    /// torchvision: RGB in [0, 1], minus mean (0.485, 0.456, 0.406), over std (0.229, 0.224, 0.225).
    Torch,
    /// Caffe (the original VGG release): BGR in [0, 255], minus mean (103.939, 116.779, 123.68).
    Caffe,
}

impl Preprocess {
    /// The affine map from RGB in [0, 1] to the network's input.
    pub fn affine(self) -> Affine {
        match self {
            Preprocess::Torch => {
                let mean = [0.485f32, 0.456, 0.406];
                let std = [0.229f32, 0.224, 0.225];
                Affine {
                    src: [0, 1, 2],
                    a: [1.0 / std[0], 1.0 / std[1], 1.0 / std[2]],
                    b: [-mean[0] / std[0], -mean[1] / std[1], -mean[2] / std[2]],
                }
            }
            Preprocess::Caffe => Affine { src: [2, 1, 0], a: [255.0; 3], b: [-103.939, -116.779, -123.68] },
        }
    }
}
