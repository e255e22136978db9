/** The identity engine's public surface for the call integration, HTTP and pages. */
export * from './types.ts';
export { ImageError, IMAGE_ERROR_CODES, DEFAULT_IMAGE_LIMITS, probeImage, decodeImage, sniffImageType } from './image.ts';
export type { ImageErrorCode, ImageLimits, ImageFormat, RgbImage, ImageHeader, DecodedImage } from './image.ts';
export * from './engine.ts';
export * from './scoring.ts';
export * from './liveness.ts';
export * from './quality.ts';
export * from './reference-photo.ts';
export * from './document.ts';
export * from './blobs.ts';
export * from './evidence.ts';
export * from './monitor.ts';
export * from './config.ts';
