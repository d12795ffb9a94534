// The JSON form of a TypeScript type from @grafana/schema.
//
// Grafana's schema types use TypeScript string enums (ThresholdsMode, MappingType, ...), which no JSON
// literal can satisfy ("absolute" is not assignable to ThresholdsMode.Absolute), although "absolute" is
// exactly what Grafana writes and reads. JsonOf<T> replaces every string enum by the union of its
// values (`${E}` is "absolute" | "percentage") and leaves everything else as strict as it is: numeric
// enums stay numeric (graphTooltip: "shared" is still an error), unknown keys are still excess
// properties, required keys are still required.
export type JsonOf<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends Array<infer U>
      ? Array<JsonOf<U>>
      : T extends object
        ? { [K in keyof T]: JsonOf<T[K]> }
        : T;
