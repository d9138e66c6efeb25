"""Second step of orders/process-order: total the order lines parsed by parse-order."""


def main(args):
    lines = args.get("lines", [])
    total = sum(float(line.get("price", 0)) * int(line.get("quantity", 1)) for line in lines)
    return {"orderId": args.get("orderId"), "items": len(lines), "total": round(total, 2),
            "currency": args.get("currency", "EUR")}
