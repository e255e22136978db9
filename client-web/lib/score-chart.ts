/**
 * The face-match similarity chart's frame, shared by the teller console (live) and the
 * compliance replay: a cleared plain canvas (no chart library) with the decision threshold,
 * similarity 0.5, as a dashed line across the middle. Returns the drawing size.
 */
export function drawScoreChartFrame(ctx: CanvasRenderingContext2D, canvas: HTMLCanvasElement): { w: number; h: number } {
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = '#9aa0a6';
  ctx.setLineDash([4, 4]);
  ctx.beginPath();
  ctx.moveTo(0, h / 2);
  ctx.lineTo(w, h / 2);
  ctx.stroke();
  ctx.setLineDash([]);
  return { w, h };
}
