// First step of orders/process-order: pick the order lines out of the webhook body.
function main(params) {
  let body = params.body !== undefined ? params.body : params;
  if (typeof body === "string") {
    try { body = JSON.parse(body); } catch (e) { return { error: "order body is not JSON" }; }
  }
  const lines = Array.isArray(body.lines) ? body.lines : [];
  return { orderId: body.id || null, lines: lines };
}
