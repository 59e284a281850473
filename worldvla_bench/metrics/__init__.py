"""World-model metrics: FVD, LPIPS, SSIM and PSNR, computed as the reference implementations do."""
